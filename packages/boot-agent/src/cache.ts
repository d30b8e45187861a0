/**
 * The host's bundle cache: `<dir>/<sha256>.tar.gz`. A file appears under its hash only
 * after its bytes were verified (temporary name, fsync, rename, directory fsync), and it
 * is hashed again before every use, so a corrupt or planted file is discarded and
 * refetched, never run. Agents sharing the directory never see each other's partial
 * files; two fetching the same bundle both rename complete, identical files into place.
 * Least recently used files are evicted past the size cap.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export class BundleCache {
  constructor(
    readonly dir: string,
    private readonly maxBytes: number,
  ) {}

  pathFor(hash: string): string {
    return path.join(this.dir, `${hash}.tar.gz`);
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

  /** Publishes a verified temporary file under its hash. */
  async commit(temp: string, hash: string): Promise<string> {
    const file = this.pathFor(hash);
    await fs.rename(temp, file);
    const dir = await fs.open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return file;
  }

  /** Removes least recently used bundles until the cache fits, never `keep`. */
  async evict(keep: string): Promise<string[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    const entries = [];
    for (const name of names) {
      if (!/^[0-9a-f]{64}\.tar\.gz$/.test(name)) continue;
      const st = await fs.stat(path.join(this.dir, name)).catch(() => null);
      if (st) entries.push({ file: path.join(this.dir, name), size: st.size, mtime: st.mtimeMs });
    }
    let total = entries.reduce((n, e) => n + e.size, 0);
    const evicted: string[] = [];
    for (const e of entries.sort((a, b) => a.mtime - b.mtime)) {
      if (total <= this.maxBytes) break;
      if (e.file === keep) continue;
      await fs.rm(e.file, { force: true });
      total -= e.size;
      evicted.push(e.file);
    }
    return evicted;
  }
}

async function sha256Stream(stream: AsyncIterable<unknown>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
