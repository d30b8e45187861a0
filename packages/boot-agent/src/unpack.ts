/**
 * Unpacks a bundle into a fresh staging directory, then swaps it in with a rename: the
 * target is either the complete new tree or untouched. node-tar parses the archive; the
 * writer here creates nothing but regular files and directories, so no link, device or
 * FIFO can ever appear, and no path can leave the staging directory.
 */
import fsSync, { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { AgentError } from './errors.js';

export type UnpackLimits = {
  maxEntries: number;
  maxBytes: number;
  maxDepth: number;
  /** Unpacked bytes per compressed byte; more is a decompression bomb. */
  maxRatio: number;
};

export const DEFAULT_UNPACK_LIMITS: UnpackLimits = { maxEntries: 100_000, maxBytes: 4 * 1024 ** 3, maxDepth: 64, maxRatio: 200 };

export type UnpackResult = { files: number; directories: number; bytes: number };

const unsafe = (message: string) => new AgentError('unsafe_bundle', message);

/** The entry's path relative to the bundle root, or a refusal naming it. */
function safeRelativePath(raw: string, maxDepth: number): string {
  if (raw.includes('\0')) throw unsafe(`entry "${raw.replace(/\0/g, '\\0')}" has a NUL in its path`);
  if (raw.startsWith('/')) throw unsafe(`entry "${raw}" has an absolute path`);
  const segments = raw.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw unsafe(`entry "${raw}" climbs out with ".."`);
  if (segments.length > maxDepth) throw unsafe(`entry "${raw.slice(0, 200)}…" is nested deeper than ${maxDepth} levels`);
  return segments.join('/');
}

export async function isGzip(file: string): Promise<boolean> {
  const handle = await fs.open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/** Entries up to this size are collected and written with one call; larger ones are streamed. */
export const SMALL_FILE = 1024 * 1024;

/** What a bundle unpacks to: every file with its mode, and every directory (implied ones too), by relative path. */
export type Listing = { files: Map<string, number>; dirs: Set<string> };

export type CheckedEntry = { type: 'dir'; rel: string } | { type: 'file'; rel: string; mode: number; size: number };

/**
 * The rules every entry must pass, in archive order, before any byte of it is written:
 * unpacking uses them, and so does checking a cached tree against the archive (tree.ts),
 * so both accept exactly the same bundles.
 */
export class EntryRules {
  readonly result: UnpackResult = { files: 0, directories: 0, bytes: 0 };
  readonly listing: Listing = { files: new Map(), dirs: new Set() };
  constructor(private readonly limits: UnpackLimits) {}

  /** The entry's relative path and what it is, or a refusal naming it. */
  check(entry: tar.ReadEntry): CheckedEntry {
    const { files, dirs } = this.listing;
    const rel = safeRelativePath(entry.path, this.limits.maxDepth);
    if (this.result.files + this.result.directories >= this.limits.maxEntries) throw unsafe(`more than ${this.limits.maxEntries} entries`);
    if (entry.type === 'Directory') {
      this.result.directories++;
      if (files.has(rel)) throw unsafe(`entry "${entry.path}" conflicts with another entry`);
      this.addDir(rel);
      return { type: 'dir', rel };
    }
    if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile') {
      throw unsafe(`entry "${entry.path}" is a ${entry.type}; bundles may hold only regular files and directories`);
    }
    if (rel === '') throw unsafe('a file entry names the bundle root');
    this.result.files++;
    const size = entry.size ?? 0;
    this.result.bytes += size;
    if (this.result.bytes > this.limits.maxBytes) throw unsafe(`unpacked size exceeds ${this.limits.maxBytes} bytes`);
    // Owner, setuid, setgid and sticky bits are never applied: executables get 0755, the rest 0644.
    const mode = (entry.mode ?? 0) & 0o111 ? 0o755 : 0o644;
    if (files.has(rel)) throw unsafe(`entry "${entry.path}" appears twice`);
    if (dirs.has(rel) || [...ancestors(rel)].some((a) => files.has(a))) throw unsafe(`entry "${entry.path}" conflicts with another entry`);
    files.set(rel, mode);
    this.addDir(path.posix.dirname(rel));
    return { type: 'file', rel, mode, size };
  }

  /** Records `rel` and its ancestors as directories ("." and "" are the root). */
  private addDir(rel: string) {
    for (let d = rel; d !== '' && d !== '.' && !this.listing.dirs.has(d); d = path.posix.dirname(d)) this.listing.dirs.add(d);
  }
}

/**
 * Checks and writes entries synchronously, one at a time, as the parser hands them over:
 * every check on an entry passes before any byte of it is written, memory stays at one
 * chunk (or one small file) and at most one file descriptor is open, however many entries
 * the archive holds. The agent does nothing else meanwhile.
 */
function extractInto(file: string, root: string, limits: UnpackLimits): Promise<{ result: UnpackResult; listing: Listing }> {
  const rules = new EntryRules(limits);
  const madeDirs = new Set<string>([root]);
  const ensureDir = (dir: string) => {
    if (madeDirs.has(dir)) return;
    fsSync.mkdirSync(dir, { recursive: true, mode: 0o755 });
    madeDirs.add(dir);
  };
  // Duplicates and file/directory clashes are found by name (EntryRules); writing also has
  // the file system's word for it (O_EXCL, ENOTDIR).
  let openFd: number | undefined;
  const writeError = (entryPath: string, err: NodeJS.ErrnoException) =>
    err.code === 'EEXIST'
      ? unsafe(`entry "${entryPath}" appears twice`)
      : err.code === 'ENOTDIR' || err.code === 'EISDIR'
        ? unsafe(`entry "${entryPath}" conflicts with another entry`)
        : err;
  return new Promise((resolve, reject) => {
    let done = false;
    const parser = new tar.Parser({ strict: true, maxDecompressionRatio: limits.maxRatio });
    const source = createReadStream(file);
    const fail = (err: unknown) => {
      if (done) return;
      done = true;
      source.destroy();
      if (openFd !== undefined) fsSync.closeSync(openFd);
      openFd = undefined;
      parser.abort(err instanceof Error ? err : new Error(String(err)));
      reject(err instanceof AgentError ? err : unsafe(`not a valid bundle: ${(err as Error).message}`));
    };
    parser.on('entry', (entry: tar.ReadEntry) => {
      if (done) return entry.resume();
      try {
        const checked = rules.check(entry);
        const abs = path.join(root, checked.rel);
        if (checked.type === 'dir') {
          ensureDir(abs);
          entry.resume();
          return;
        }
        const { mode, size } = checked;
        ensureDir(path.dirname(abs));
        // 'wx' (O_EXCL): a second entry with the same path is refused, not merged.
        if (size <= SMALL_FILE) {
          const chunks: Buffer[] = [];
          entry.on('data', (c: Buffer) => chunks.push(c));
          entry.on('end', () => {
            if (done) return;
            try {
              fsSync.writeFileSync(abs, Buffer.concat(chunks), { flag: 'wx', mode });
            } catch (err) {
              fail(writeError(entry.path, err as NodeJS.ErrnoException));
            }
          });
        } else {
          const fd = fsSync.openSync(abs, 'wx', mode);
          openFd = fd;
          entry.on('data', (c: Buffer) => {
            if (done) return;
            try {
              fsSync.writeSync(fd, c);
            } catch (err) {
              fail(err);
            }
          });
          entry.on('end', () => {
            if (openFd !== fd) return;
            openFd = undefined;
            fsSync.closeSync(fd);
          });
        }
      } catch (err) {
        entry.resume();
        fail(err instanceof AgentError ? err : writeError(entry.path, err as NodeJS.ErrnoException));
      }
    });
    parser.on('ignoredEntry', (entry: tar.ReadEntry) => fail(unsafe(`entry "${entry.path}" has an unsupported type (${entry.type})`)));
    parser.on('error', fail);
    parser.on('abort', fail);
    parser.on('end', () => {
      if (done) return;
      if (rules.result.files + rules.result.directories === 0) return fail(unsafe('the archive holds no entries'));
      done = true;
      resolve({ result: rules.result, listing: rules.listing });
    });
    source.on('error', fail);
    source.pipe(parser);
  });
}

/** "a/b/c" → "a", "a/b". */
function* ancestors(rel: string): Generator<string> {
  for (let i = rel.indexOf('/'); i !== -1; i = rel.indexOf('/', i + 1)) yield rel.slice(0, i);
}

/** Runs after a bundle unpacked into `staging` and before it replaces the target (the cache keeps a tree of it). */
export type BeforeSwap = (staging: string, result: UnpackResult, listing: Listing) => Promise<void>;

/**
 * Unpacks `file` (a gzip'd tar) to `target`, replacing what was there only on success.
 * One pass: entries are checked and written into a fresh staging directory beside the
 * target, which is renamed into place once the whole archive passed, and removed when an
 * entry is refused. A refused bundle may leave part of itself in the staging directory
 * until then, never more than the caps allow (entries, declared sizes, decompression
 * ratio), which bound an accepted bundle too: one gunzip instead of a checking pass and
 * a writing pass.
 */
export async function unpackBundle(file: string, target: string, limits: UnpackLimits = DEFAULT_UNPACK_LIMITS, beforeSwap?: BeforeSwap): Promise<UnpackResult> {
  if (!(await isGzip(file))) throw unsafe('the bundle is not gzip-compressed');
  return viaStaging(target, async (staging) => {
    const { result, listing } = await extractInto(file, staging, limits);
    await beforeSwap?.(staging, result, listing);
    return result;
  });
}

/**
 * Fills a fresh staging directory beside `target` with `fill`, then renames it into place:
 * the target is the complete new tree or untouched. The staging directory is removed when
 * `fill` fails.
 */
export async function viaStaging<T>(target: string, fill: (staging: string) => Promise<T>): Promise<T> {
  const parent = path.dirname(target);
  await fs.mkdir(parent, { recursive: true });
  const staging = await fs.mkdtemp(path.join(parent, `.${path.basename(target)}.staging-`));
  try {
    const result = await fill(staging);
    await fs.chmod(staging, 0o755);
    const old = `${staging}.old`;
    const hadTarget = await fs.rename(target, old).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw err;
      },
    );
    await fs.rename(staging, target);
    if (hadTarget) await fs.rm(old, { recursive: true, force: true });
    return result;
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true });
    throw err;
  }
}
