/**
 * The host's bundle cache: `<dir>/<sha256>.tar.gz`. A file appears under its hash only
 * after its bytes were verified (temporary name, rename), and it is hashed again before
 * every use, so a corrupt or planted file is discarded and refetched, never run. Nothing
 * in the cache is fsynced, for the same reason: a file a crash left short fails that
 * check and is fetched again, so a boot does not wait for the disk. Agents sharing the directory never see each other's partial
 * files; two fetching the same bundle both rename complete, identical files into place.
 *
 * Beside an archive, `<dir>/<sha256>.tree/` may hold the bundle unpacked (tree.ts): built
 * complete in a `.partial-tree-*` directory, renamed into place (the first of two agents
 * wins, the other removes its own), checked against the archive before every use, and
 * removed by renaming it to `.trash-*` first, so no agent ever sees a partial tree under a
 * bundle's name. Least recently used bundles, archive and tree together, are evicted past
 * the size cap.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { BundleCounts, Listing } from '@swarm/sdk/bundle-rules';
import { removeAbandoned } from './leftovers.js';
import { buildTree, readTreeManifest } from './tree.js';

export class BundleCache {
  constructor(
    readonly dir: string,
    private readonly maxBytes: number,
  ) {}

  pathFor(hash: string): string {
    return path.join(this.dir, `${hash}.tar.gz`);
  }

  /** Makes the cache directory the agent's alone (mode 0700), creating it if need be. */
  async keepPrivate(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await fs.chmod(this.dir, 0o700);
  }

  /** A fresh temporary path in the cache directory (same filesystem, so rename is atomic). */
  async tempPath(): Promise<string> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o755 });
    return path.join(this.dir, `.partial-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** The cached file for `hash` if it is there and its bytes still hash to it; a bad file is removed. */
  async lookup(hash: string): Promise<{ file: string; bytes: number } | 'corrupt' | null> {
    const file = this.pathFor(hash);
    const handle = await fs.open(file, 'r').catch(() => null);
    if (!handle) return null;
    let st;
    let actual;
    try {
      st = await handle.stat();
      if (!st.isFile()) return null;
      actual = await sha256Stream(handle.createReadStream({ autoClose: false, highWaterMark: 1024 * 1024 }));
    } finally {
      await handle.close();
    }
    if (actual !== hash) {
      // Remove only the file we hashed: another agent may have renamed a good one into place meanwhile.
      const now = await fs.stat(file).catch(() => null);
      if (now?.ino === st.ino) await fs.rm(file, { force: true });
      return 'corrupt';
    }
    const now = new Date();
    await fs.utimes(file, now, now).catch(() => {}); // recency for LRU eviction
    return { file, bytes: st.size };
  }

  /** Publishes a verified temporary file under its hash (not fsynced: see the header). */
  async commit(temp: string, hash: string): Promise<string> {
    const file = this.pathFor(hash);
    await fs.rename(temp, file);
    return file;
  }

  treePath(hash: string): string {
    return path.join(this.dir, `${hash}.tree`);
  }

  /**
   * Keeps a tree of a bundle just unpacked into `staging` (before the runtime can touch
   * it), then evicts past the cap. Best effort: a boot never fails for it. Returns why no
   * tree was kept, or null.
   */
  async saveTree(hash: string, staging: string, counts: BundleCounts, listing: Listing): Promise<string | null> {
    const partial = path.join(this.dir, `.partial-tree-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await fs.mkdir(partial, { mode: 0o755 });
      buildTree(partial, staging, hash, counts, listing);
      await fs.rename(partial, this.treePath(hash)).catch(async (err: NodeJS.ErrnoException) => {
        // Another agent's tree is already there: it is checked before every use, as ours would be.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
        await fs.rm(partial, { recursive: true, force: true });
      });
      await this.evict(hash);
      return null;
    } catch (err) {
      await fs.rm(partial, { recursive: true, force: true });
      const e = err as NodeJS.ErrnoException;
      return e.code === 'EXDEV' ? 'the cache and the workflow directory are on different file systems' : (e.message ?? String(e));
    }
  }

  /** Removes a tree: renamed away first, so nobody finds a half-removed tree under the bundle's name. */
  async discardTree(hash: string): Promise<void> {
    const trash = path.join(this.dir, `.trash-${process.pid}-${randomBytes(6).toString('hex')}`);
    const moved = await fs.rename(this.treePath(hash), trash).then(
      () => true,
      () => false,
    );
    if (moved) await fs.rm(trash, { recursive: true, force: true });
  }

  /** Marks a bundle as just used (LRU recency lives on the archive's mtime). */
  async touch(hash: string): Promise<void> {
    const now = new Date();
    await fs.utimes(this.pathFor(hash), now, now).catch(() => {});
  }

  /**
   * Removes least recently used bundles, each archive with its tree, until the cache fits,
   * never `keep`'s. A tree counts the bytes its manifest gives; one without a valid
   * manifest is not the agent's and is removed. Leftover `.trash-*` directories go too, and
   * abandoned `.partial-*` downloads and trees (leftovers.ts): a crash (nothing is fsynced)
   * can leave one behind; a live download writes every idle timeout.
   */
  async evict(keep: string): Promise<string[]> {
    const names = await removeAbandoned(this.dir, '.partial-');
    const bundles = new Map<string, { size: number; mtime: number; archive: boolean; tree: boolean }>();
    const entry = (hash: string) => bundles.get(hash) ?? bundles.set(hash, { size: 0, mtime: 0, archive: false, tree: false }).get(hash)!;
    for (const name of names) {
      if (name.startsWith('.trash-')) {
        await fs.rm(path.join(this.dir, name), { recursive: true, force: true });
        continue;
      }
      const m = /^([0-9a-f]{64})\.(tar\.gz|tree)$/.exec(name);
      if (!m) continue;
      const hash = m[1]!;
      const st = await fs.lstat(path.join(this.dir, name)).catch(() => null);
      if (!st) continue;
      const e = entry(hash);
      if (m[2] === 'tar.gz') {
        e.archive = true;
        e.size += st.size;
        e.mtime = Math.max(e.mtime, st.mtimeMs);
        continue;
      }
      const manifest = st.isDirectory() ? readTreeManifest(path.join(this.dir, name)) : null;
      if (!manifest || manifest.bundle !== hash) {
        if (hash !== keep) await this.discardTree(hash);
        continue;
      }
      e.tree = true;
      e.size += manifest.bytes;
      if (!e.archive) e.mtime = Math.max(e.mtime, st.mtimeMs);
    }
    let total = [...bundles.values()].reduce((n, e) => n + e.size, 0);
    const evicted: string[] = [];
    for (const [hash, e] of [...bundles].sort((a, b) => a[1].mtime - b[1].mtime)) {
      if (total <= this.maxBytes) break;
      if (hash === keep) continue;
      if (e.tree) await this.discardTree(hash);
      if (e.archive) await fs.rm(this.pathFor(hash), { force: true });
      total -= e.size;
      evicted.push(hash);
    }
    return evicted;
  }
}

async function sha256Stream(stream: AsyncIterable<unknown>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
