/**
 * Packs a directory into a bundle (tar.gz) deterministically, so the same tree gives the
 * same bytes, and so the same hash, on any machine and from any checkout:
 * - entries sorted by their names in the archive (UTF-8 byte order; a directory's name ends
 *   in `/`, so it comes right before its contents);
 * - no times at all (mtime, atime, ctime are left out of every header, pax headers included),
 *   no owner ids or names, modes normalised to 0644 (0755 for directories and for files
 *   with any execute bit), hard links stored as plain files;
 * - gzip by fflate (pure JavaScript) at level 6 over fixed 64 KiB input blocks, with no
 *   name and mtime 0 in its header. Node's own zlib is Chromium's fork, whose output
 *   differs between zlib builds and CPUs, so it cannot promise "the same bytes anywhere".
 * What is packed: see scanBundle (.swarmignore, secret files, symlinks) and docs/bundles.md.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Gzip } from 'fflate';
import * as tar from 'tar';
import { loadIgnoreRules } from './bundle-ignore.js';
import { SwarmError } from './errors.js';
import { findSecretFiles, secretFilesError } from './secret-files.js';

export type BundleEntry = {
  /** Path inside the bundle, `/`-separated. */
  path: string;
  type: 'file' | 'directory';
  /** Bytes of a file's content; 0 for directories. */
  size: number;
  /** For a symlink: the tree path of the file it points to, whose bytes are packed. */
  linkTarget?: string;
};

export type ScanOptions = {
  /** Pack files that look like secrets (see secret-files.ts) instead of refusing them. */
  allowSecretFiles?: boolean;
};

/** A fixed level: the bytes (and so the hash) depend on it. */
export const GZIP_LEVEL = 6;
const GZIP_BLOCK = 64 * 1024;

/** Archive order: byte order of the names as the tar stores them (a directory's ends in `/`). */
const tarName = (e: BundleEntry) => Buffer.from(e.type === 'directory' ? `${e.path}/` : e.path);
const byTarName = (a: BundleEntry, b: BundleEntry) => Buffer.compare(tarName(a), tarName(b));
const inside = (root: string, p: string) => p.startsWith(root + path.sep);

/**
 * What a bundle of `root` holds, in archive order: directories and files, minus what the
 * defaults and `.swarmignore` exclude. A symlink to a file inside the tree is packed as
 * that file; a symlink leading outside the tree, to a directory, or to nothing is
 * refused (the boot agent accepts only files and directories, and following directory
 * links would invite cycles and duplicates). Files that look like secrets are refused
 * unless `allowSecretFiles`. Throws SwarmError INVALID_INPUT naming the problem.
 */
export async function scanBundle(root: string, opts: ScanOptions = {}): Promise<BundleEntry[]> {
  const st = await fs.stat(root).catch(() => {
    throw new SwarmError('INVALID_INPUT', `${root} does not exist`);
  });
  if (!st.isDirectory()) throw new SwarmError('INVALID_INPUT', `${root} is not a directory`);
  const realRoot = await fs.realpath(root);
  const rules = await loadIgnoreRules(realRoot);
  const entries: BundleEntry[] = [];
  let ignored = 0;

  async function walk(rel: string): Promise<void> {
    for (const d of await fs.readdir(path.join(realRoot, rel), { withFileTypes: true })) {
      const relPath = rel ? `${rel}/${d.name}` : d.name;
      const abs = path.join(realRoot, relPath);
      if (d.isSymbolicLink()) {
        const target = await fs.realpath(abs).catch((err: NodeJS.ErrnoException) => err);
        const targetStat = typeof target === 'string' ? await fs.stat(target) : undefined;
        if (rules.ignores(relPath, targetStat?.isDirectory() ?? false)) {
          ignored++;
          continue;
        }
        const linkText = await fs.readlink(abs);
        const hint = 'or exclude the link in .swarmignore';
        if (typeof target !== 'string') {
          const what = target.code === 'ELOOP' ? 'is a loop of symlinks' : `points to ${linkText}, which does not exist`;
          throw new SwarmError('INVALID_INPUT', `symlink ${relPath} ${what}`, `remove the link, ${hint}`);
        }
        if (!inside(realRoot, target)) {
          throw new SwarmError(
            'INVALID_INPUT',
            `symlink ${relPath} points outside the bundle directory (to ${linkText})`,
            `copy the file into the directory, ${hint}`,
          );
        }
        if (!targetStat?.isFile()) {
          throw new SwarmError(
            'INVALID_INPUT',
            `symlink ${relPath} points to a directory; only links to files are packed`,
            `replace the link with a copy of the directory, ${hint}`,
          );
        }
        entries.push({
          path: relPath,
          type: 'file',
          size: targetStat.size,
          linkTarget: path.relative(realRoot, target).split(path.sep).join('/'),
        });
      } else if (d.isDirectory()) {
        if (rules.ignores(relPath, true)) {
          ignored++;
          continue;
        }
        entries.push({ path: relPath, type: 'directory', size: 0 });
        await walk(relPath);
      } else if (rules.ignores(relPath, false)) {
        ignored++;
      } else if (d.isFile()) {
        entries.push({ path: relPath, type: 'file', size: (await fs.stat(abs)).size });
      } else {
        throw new SwarmError('INVALID_INPUT', `${relPath} is not a regular file or directory`, 'remove it, or exclude it in .swarmignore');
      }
    }
  }
  await walk('');
  entries.sort(byTarName);

  if (!entries.some((e) => e.type === 'file')) {
    const why = ignored ? ` (.swarmignore and the defaults exclude ${ignored} ${ignored === 1 ? 'entry' : 'entries'})` : '';
    throw new SwarmError('INVALID_INPUT', `nothing to pack: ${root} has no files${why}`);
  }
  if (!opts.allowSecretFiles) {
    const files = entries
      .filter((e) => e.type === 'file')
      .map((e) => ({ path: e.path, sourcePath: e.linkTarget ?? e.path, source: path.join(realRoot, e.linkTarget ?? e.path) }));
    const found = await findSecretFiles(files);
    if (found.length) throw secretFilesError(found);
  }
  return entries;
}

/** The paths scanBundle finds, for packDirectory. */
export async function listBundleEntries(root: string, opts: ScanOptions = {}): Promise<string[]> {
  return (await scanBundle(root, opts)).map((e) => e.path);
}

/** The size of the uncompressed tar of `entries` (pax headers for long names aside): a progress total. */
export function tarSize(entries: readonly BundleEntry[]): number {
  return entries.reduce((n, e) => n + 512 + Math.ceil(e.size / 512) * 512, 1024);
}

/**
 * A tar.gz stream of `root`'s entries (from scanBundle or listBundleEntries), in the
 * order given. `onTarBytes` sees the uncompressed bytes as they are compressed.
 */
export function packDirectory(
  root: string,
  entries: ReadonlyArray<string | BundleEntry>,
  opts: { onTarBytes?: (n: number) => void } = {},
): Readable {
  const archive = tar.create(
    {
      cwd: root,
      portable: true,
      follow: true,
      noDirRecurse: true,
      // A file with several hard links inside the tree is stored each time as a file,
      // not as a link entry: the bytes must not depend on how a checkout was made.
      linkCache: new NoHardLinks(),
      onWriteEntry: (entry) => {
        entry.noMtime = true;
        const st = entry.stat as { mode: number } | undefined;
        if (!st) return;
        const isDir = entry.type === 'Directory';
        st.mode = (st.mode & ~0o7777) | (isDir || st.mode & 0o111 ? 0o755 : 0o644);
      },
    },
    entries.map((e) => (typeof e === 'string' ? e : e.path)),
  ) as unknown as Readable;
  const gzip = new DeterministicGzip(opts.onTarBytes);
  archive.on('error', (err: Error) => gzip.destroy(err));
  return archive.pipe(gzip);
}

class NoHardLinks extends Map<`${number}:${number}`, string> {
  override set(): this {
    return this;
  }
}

/**
 * gzip whose output depends only on its input: fflate at a fixed level, fed in fixed-size
 * blocks (fflate's output depends on how its input is split), header without name and
 * with mtime 0.
 */
class DeterministicGzip extends Transform {
  private readonly gzip = new Gzip({ level: GZIP_LEVEL, mtime: 0 }, (chunk) => this.push(Buffer.from(chunk)));
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  constructor(private readonly onTarBytes?: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.onTarBytes?.(chunk.length);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    try {
      if (this.pendingBytes >= GZIP_BLOCK) {
        let all = Buffer.concat(this.pending);
        while (all.length >= GZIP_BLOCK) {
          this.gzip.push(all.subarray(0, GZIP_BLOCK));
          all = all.subarray(GZIP_BLOCK);
        }
        this.pending = [all];
        this.pendingBytes = all.length;
      }
      done();
    } catch (err) {
      done(err as Error);
    }
  }
  override _flush(done: TransformCallback): void {
    try {
      this.gzip.push(Buffer.concat(this.pending), true);
      done();
    } catch (err) {
      done(err as Error);
    }
  }
}

export type PackProgress = {
  phase: 'pack';
  /** Uncompressed tar bytes so far. */
  bytes: number;
  /** Expected uncompressed tar bytes (see tarSize). */
  total: number;
};

export type PackResult = {
  /** sha256 of the tar.gz, hex: the bundle hash the registry will store it under. */
  hash: string;
  /** Bytes of the tar.gz. */
  size: number;
  files: number;
  directories: number;
};

/**
 * Scans and packs `root`, hashing the tar.gz in flight. With `out`, writes it there (via
 * a temporary file in the same directory renamed at the end, so a failure leaves no
 * partial file); without, only computes the hash a pack would have.
 */
export async function packBundle(
  root: string,
  opts: ScanOptions & { out?: string; onProgress?: (p: PackProgress) => void } = {},
): Promise<PackResult> {
  let tmp: string | undefined;
  if (opts.out !== undefined) {
    const dir = path.dirname(path.resolve(opts.out));
    const dirStat = await fs.stat(dir).catch(() => null);
    if (!dirStat?.isDirectory()) throw new SwarmError('INVALID_INPUT', `cannot write ${opts.out}: directory ${dir} does not exist`);
    if ((await fs.stat(opts.out).catch(() => null))?.isDirectory())
      throw new SwarmError('INVALID_INPUT', `cannot write ${opts.out}: it is a directory`);
    tmp = path.join(dir, `.${path.basename(opts.out)}.${randomBytes(6).toString('hex')}.partial`);
  }
  const entries = await scanBundle(root, opts);
  const total = tarSize(entries);
  let done = 0;
  const hash = createHash('sha256');
  let size = 0;
  const hashing = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  const sink = tmp ? createWriteStream(tmp, { flags: 'wx' }) : new Writable({ write: (_c, _e, cb) => cb() });
  try {
    await pipeline(
      packDirectory(root, entries, {
        onTarBytes: (n) => {
          done += n;
          opts.onProgress?.({ phase: 'pack', bytes: Math.min(done, total), total });
        },
      }),
      hashing,
      sink,
    );
    if (tmp && opts.out) await fs.rename(tmp, opts.out);
  } catch (err) {
    if (tmp) await fs.rm(tmp, { force: true });
    throw err;
  }
  return {
    hash: hash.digest('hex'),
    size,
    files: entries.filter((e) => e.type === 'file').length,
    directories: entries.filter((e) => e.type === 'directory').length,
  };
}
