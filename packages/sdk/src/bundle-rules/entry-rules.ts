/**
 * What a bundle may hold, entry by entry: the rules the boot agent applies before it
 * writes a byte (and when it checks a cached tree), in a module the registry and the SDK
 * can import too, so all three accept exactly the same bundles. Node builtins only: the
 * boot agent loads this on every boot.
 */
import path from 'node:path';

/** Why a bundle is refused: the message names the problem and, where there is one, the entry. */
export class UnsafeBundle extends Error {
  override readonly name = 'UnsafeBundle';
}

export type BundleLimits = {
  maxEntries: number;
  maxBytes: number;
  maxDepth: number;
  /** Unpacked bytes per compressed byte; more is a decompression bomb. */
  maxRatio: number;
};

export const DEFAULT_BUNDLE_LIMITS: BundleLimits = { maxEntries: 100_000, maxBytes: 4 * 1024 ** 3, maxDepth: 64, maxRatio: 200 };

export type BundleCounts = { files: number; directories: number; bytes: number };

/** What a bundle unpacks to: every file with its mode, and every directory (implied ones too), by relative path. */
export type Listing = { files: Map<string, number>; dirs: Set<string> };

/** A tar entry as any parser reports it (node-tar's ReadEntry is one). */
export type ArchiveEntry = { path: string; type: string; size?: number | undefined; mode?: number | undefined };

/** An entry that passed the rules: `path` as the archive names it, `rel` relative to the bundle root ("" is the root). */
export type CheckedEntry =
  | { type: 'dir'; path: string; rel: string }
  | { type: 'file'; path: string; rel: string; mode: number; size: number };

/** Longest file name and relative path a bundle may hold, in bytes (Linux's NAME_MAX, PATH_MAX - 1). */
export const MAX_NAME_BYTES = 255;
export const MAX_PATH_BYTES = 4095;

/** The entry's path relative to the bundle root ("a/b", "" for the root), or a refusal naming it. */
export function safeRelativePath(raw: string, maxDepth: number): string {
  if (raw.includes('\0')) throw new UnsafeBundle(`entry "${raw.replace(/\0/g, '\\0')}" has a NUL in its path`);
  if (raw.startsWith('/')) throw new UnsafeBundle(`entry "${raw}" has an absolute path`);
  const segments = raw.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw new UnsafeBundle(`entry "${raw}" climbs out with ".."`);
  if (segments.length > maxDepth) throw new UnsafeBundle(`entry "${raw.slice(0, 200)}…" is nested deeper than ${maxDepth} levels`);
  // Linux's NAME_MAX and PATH_MAX: a longer name cannot be unpacked anyway, and without a
  // bound the names alone (kept for the duplicate check) could fill a reader's memory.
  const rel = segments.join('/');
  if (segments.some((s) => Buffer.byteLength(s) > MAX_NAME_BYTES)) {
    throw new UnsafeBundle(`entry "${raw.slice(0, 200)}…" has a name longer than ${MAX_NAME_BYTES} bytes`);
  }
  if (Buffer.byteLength(rel) > MAX_PATH_BYTES)
    throw new UnsafeBundle(`entry "${raw.slice(0, 200)}…" has a path longer than ${MAX_PATH_BYTES} bytes`);
  return rel;
}

/** The mode a file is unpacked with: owner, setuid, setgid and sticky bits are never applied; executables get 0755, the rest 0644. */
export const unpackedMode = (mode: number | undefined): number => ((mode ?? 0) & 0o111 ? 0o755 : 0o644);

/** "a/b/c" → "a", "a/b". */
export function* ancestors(rel: string): Generator<string> {
  for (let i = rel.indexOf('/'); i !== -1; i = rel.indexOf('/', i + 1)) yield rel.slice(0, i);
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/**
 * The rules every entry must pass, in archive order, before any byte of it is used: only
 * regular files and directories, safe relative paths, no entry twice, no file where a
 * directory is (or the other way round), and the caps on entries and unpacked bytes.
 */
export class EntryRules {
  readonly counts: BundleCounts = { files: 0, directories: 0, bytes: 0 };
  readonly listing: Listing = { files: new Map(), dirs: new Set() };
  constructor(private readonly limits: BundleLimits) {}

  /** The entry's relative path and what it is, or a refusal naming it. */
  check(entry: ArchiveEntry): CheckedEntry {
    const { files, dirs } = this.listing;
    const rel = safeRelativePath(entry.path, this.limits.maxDepth);
    if (this.counts.files + this.counts.directories >= this.limits.maxEntries)
      throw new UnsafeBundle(`more than ${this.limits.maxEntries} entries`);
    if (entry.type === 'Directory') {
      this.counts.directories++;
      if (files.has(rel)) throw new UnsafeBundle(`entry "${entry.path}" conflicts with another entry`);
      this.addDir(rel);
      return { type: 'dir', path: entry.path, rel };
    }
    if (!FILE_TYPES.has(entry.type)) {
      throw new UnsafeBundle(`entry "${entry.path}" is a ${entry.type}; bundles may hold only regular files and directories`);
    }
    if (rel === '') throw new UnsafeBundle('a file entry names the bundle root');
    this.counts.files++;
    const size = entry.size ?? 0;
    this.counts.bytes += size;
    if (this.counts.bytes > this.limits.maxBytes) throw new UnsafeBundle(`unpacked size exceeds ${this.limits.maxBytes} bytes`);
    const mode = unpackedMode(entry.mode);
    if (files.has(rel)) throw new UnsafeBundle(`entry "${entry.path}" appears twice`);
    if (dirs.has(rel) || [...ancestors(rel)].some((a) => files.has(a)))
      throw new UnsafeBundle(`entry "${entry.path}" conflicts with another entry`);
    files.set(rel, mode);
    this.addDir(path.posix.dirname(rel));
    return { type: 'file', path: entry.path, rel, mode, size };
  }

  /** Records `rel` and its ancestors as directories ("." and "" are the root). */
  private addDir(rel: string) {
    for (let d = rel; d !== '' && d !== '.' && !this.listing.dirs.has(d); d = path.posix.dirname(d)) this.listing.dirs.add(d);
  }
}
