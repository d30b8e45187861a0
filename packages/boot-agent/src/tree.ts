/**
 * Warm boots from the cache's unpacked tree: `<cache>/<hash>.tree/files/` is the bundle as
 * a cold boot unpacked it. Nothing in the cache is trusted for what it says about itself
 * (whoever can write the cache could write a tree and a manifest that agree with each
 * other), so the tree is checked against the cached archive, which must hash to the
 * bundle's sha256, in one pass: the archive is read once, hashed and parsed; every entry
 * passes the same rules as unpacking (EntryRules); every file's bytes are compared with the
 * tree's file, opened without following links, which must be a regular file owned by the
 * agent's user with the mode unpacking gives it; and the tree must hold exactly the
 * archive's files and directories. The tree's verified files are hard-linked into a
 * staging directory beside the workflow directory, whose directories are the agent's own,
 * and the staging directory is renamed into place. Writing nothing but links is what
 * makes this faster than unpacking; gunzip stays, because only it binds the tree to the hash.
 * When the metadata brings the bundle's tree digest (computed by the registry at upload)
 * and it is trusted (trust.ts), linkFromTreeByDigest checks the tree against it instead:
 * the files are hashed, the archive is neither read nor gunzipped.
 *
 * Any difference throws TreeMismatch: the caller discards the tree and unpacks the archive
 * as a cold boot does, which also reports a bad archive or an unsafe bundle properly.
 */
import { type Hash, createHash } from 'node:crypto';
import fsSync from 'node:fs';
import path from 'node:path';
import {
  type ArchiveSink,
  type BundleCounts,
  type BundleLimits,
  type Listing,
  type TreeEntry,
  type WalkResult,
  treeDigest,
  walkArchive,
} from '@swarm/sdk/bundle-rules';
import { isGzip } from './archive.js';
import { viaStaging } from './unpack.js';

export class TreeMismatch extends Error {}

const mismatch = (reason: string) => new TreeMismatch(reason);

/** The archive's manifest-free twin: `<tree>/files/`; `manifest.json` beside it (see cache.ts) only counts bytes. */
export const TREE_FILES = 'files';

/** Links the cached tree's files into `target` after checking it against `archive` (which must hash to `hash`). */
export async function linkFromTree(
  archive: string,
  hash: string,
  tree: string,
  target: string,
  limits: BundleLimits,
): Promise<BundleCounts> {
  const manifest = checkTreeLayout(tree, hash);
  if (!(await isGzip(archive))) throw mismatch('the cached archive is not gzip-compressed');
  const files = path.join(tree, TREE_FILES);
  const found = listTree(files);
  return viaStaging(target, async (staging) => {
    const { counts, listing } = await checkAndLink(archive, hash, files, staging, limits);
    sameListing(found, listing);
    if (manifest.files !== counts.files || manifest.directories !== listing.dirs.size || manifest.bytes !== counts.bytes) {
      throw mismatch('its manifest does not count what the bundle holds');
    }
    return counts;
  });
}

/**
 * Links the cached tree's files into `target` after checking the tree against the bundle's
 * tree digest (bundle-rules' tree-digest.ts), without the archive: no gunzip, no archive
 * read. Every file is opened without following links and must be a regular file owned by
 * the agent's user with the mode unpacking gives (0644 or 0755, minus the umask); its bytes
 * are hashed from that descriptor and the very inode hashed is hard-linked into staging;
 * the digest of the tree so found (paths, types, modes, sizes, file hashes) must equal
 * `digest`, so a changed, added, removed or re-moded file or directory is a mismatch. The
 * agent's caps (entries, bytes, depth) bound the walk. The caller decides whether `digest`
 * is to be trusted (trust.ts).
 */
export async function linkFromTreeByDigest(
  hash: string,
  digest: string,
  tree: string,
  target: string,
  limits: BundleLimits,
): Promise<BundleCounts> {
  const manifest = checkTreeLayout(tree, hash);
  const files = path.join(tree, TREE_FILES);
  const found = listTree(files, limits);
  return viaStaging(target, async (staging) => {
    const entries: TreeEntry[] = [];
    const counts = { files: 0, directories: 0, bytes: 0 };
    const open = treeFileOpener(files);
    for (const [rel, type] of found) {
      if (type === 'dir') {
        fsSync.mkdirSync(path.join(staging, rel), { mode: 0o755 });
        entries.push({ type: 'dir', path: rel });
        counts.directories++;
        continue;
      }
      const { fd, st, mode } = open(rel);
      let sha256: string;
      try {
        counts.bytes += st.size;
        if (counts.bytes > limits.maxBytes) throw mismatch(`it holds more than ${limits.maxBytes} bytes`);
        sha256 = hashFd(fd);
      } finally {
        fsSync.closeSync(fd);
      }
      linkVerified(files, staging, rel, st);
      entries.push({ type: 'file', path: rel, mode, size: st.size, sha256 });
      counts.files++;
    }
    const actual = treeDigest(entries);
    if (actual !== digest) throw mismatch(`its tree digest is ${actual}, not the bundle's ${digest}`);
    if (manifest.files !== counts.files || manifest.directories !== counts.directories || manifest.bytes !== counts.bytes) {
      throw mismatch('its manifest does not count what the bundle holds');
    }
    return counts;
  });
}

/** The sha256 of everything read from `fd`, from its start. */
function hashFd(fd: number): string {
  const sha = createHash('sha256');
  const chunk = Buffer.allocUnsafe(256 * 1024);
  for (let at = 0; ; ) {
    const n = fsSync.readSync(fd, chunk, 0, chunk.length, at);
    if (n === 0) break;
    sha.update(chunk.subarray(0, n));
    at += n;
  }
  return sha.digest('hex');
}

/**
 * Opens a tree file without following links; it must be a regular file owned by the
 * agent's user whose mode is one unpacking gives (0644 or 0755, minus the umask). Returns
 * the unpacked mode it stands for.
 */
function treeFileOpener(treeRoot: string) {
  const uid = process.getuid?.();
  const umask = process.umask();
  return (rel: string) => {
    const fd = fsSync.openSync(path.join(treeRoot, rel), fsSync.constants.O_RDONLY | fsSync.constants.O_NOFOLLOW);
    try {
      const st = fsSync.fstatSync(fd);
      if (!st.isFile()) throw mismatch(`"${rel}" is not a regular file`);
      const onDisk = st.mode & 0o7777;
      const mode = onDisk & 0o111 ? 0o755 : 0o644;
      if (onDisk !== (mode & ~umask)) throw mismatch(`"${rel}" has mode ${onDisk.toString(8)}`);
      if (uid !== undefined && st.uid !== uid) throw mismatch(`"${rel}" belongs to uid ${st.uid}`);
      return { fd, st, mode };
    } catch (err) {
      fsSync.closeSync(fd);
      throw err;
    }
  };
}

/** Hard-links a checked tree file into `staging`; the link must be the very inode that was checked. */
function linkVerified(treeRoot: string, staging: string, rel: string, st: fsSync.Stats): void {
  const dest = path.join(staging, rel);
  fsSync.linkSync(path.join(treeRoot, rel), dest);
  const linked = fsSync.lstatSync(dest);
  if (linked.ino !== st.ino || linked.dev !== st.dev) throw mismatch(`"${rel}" changed while it was checked`);
}

/**
 * Every directory and regular file under `root` by relative path, parents before their
 * children; anything else is a mismatch. With `limits`, a tree past the agent's caps on
 * entries or depth is a mismatch too (the walk stops there).
 */
function listTree(root: string, limits?: BundleLimits): Map<string, 'dir' | 'file'> {
  const st = fsSync.lstatSync(root, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw mismatch('no files directory');
  const out = new Map<string, 'dir' | 'file'>();
  const walk = (rel: string, depth: number) => {
    if (limits && depth > limits.maxDepth) throw mismatch(`"${rel.slice(0, 200)}" is nested deeper than ${limits.maxDepth} levels`);
    for (const d of fsSync.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (limits && out.size >= limits.maxEntries) throw mismatch(`it holds more than ${limits.maxEntries} entries`);
      if (d.isDirectory()) {
        out.set(r, 'dir');
        walk(r, depth + 1);
      } else if (d.isFile()) out.set(r, 'file');
      else throw mismatch(`"${r}" is neither a regular file nor a directory`);
    }
  };
  walk('', 1);
  return out;
}

function sameListing(found: Map<string, 'dir' | 'file'>, expected: Listing) {
  for (const [rel, type] of found) {
    if (type === 'dir' ? !expected.dirs.has(rel) : !expected.files.has(rel)) throw mismatch(`"${rel}" is not in the bundle`);
  }
  if (found.size !== expected.files.size + expected.dirs.size) {
    for (const rel of expected.dirs) if (found.get(rel) !== 'dir') throw mismatch(`directory "${rel}" is missing`);
    for (const rel of expected.files.keys()) if (found.get(rel) !== 'file') throw mismatch(`"${rel}" is missing`);
  }
}

/** Walks the archive with a compare-and-link sink; then the archive must have hashed to `hash`. */
async function checkAndLink(archive: string, hash: string, treeRoot: string, staging: string, limits: BundleLimits): Promise<WalkResult> {
  const sha = createHash('sha256');
  const walked = await walkArchive(readHashing(archive, sha), limits, compareAndLink(treeRoot, staging)).catch((err: unknown) => {
    throw err instanceof TreeMismatch ? err : mismatch((err as Error).message ?? String(err));
  });
  const actual = sha.digest('hex');
  if (actual !== hash) throw mismatch(`the cached archive's sha256 is ${actual}`);
  return walked;
}

/**
 * The archive's bytes, hashed on the way. Read synchronously: the whole pass is this
 * thread's work (inflating, comparing, linking), and an asynchronous read stream left it
 * idle between chunks.
 */
function* readHashing(file: string, sha: Hash): Generator<Buffer> {
  const fd = fsSync.openSync(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(256 * 1024);
    for (;;) {
      const n = fsSync.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      const bytes = Buffer.from(chunk.subarray(0, n)); // the parser may keep what it is given
      sha.update(bytes);
      yield bytes;
    }
  } finally {
    fsSync.closeSync(fd);
  }
}

/**
 * Compares each file's bytes with the tree's copy, which must be the file unpacking would
 * have written, and hard-links the verified copy into `staging`.
 */
function compareAndLink(treeRoot: string, staging: string): ArchiveSink {
  const uid = process.getuid?.();
  // Unpacking creates files with its modes minus the umask; a tree file must have exactly that.
  const umask = process.umask();
  /** The tree's copy of `rel`, opened without following links, with the mode, size and owner unpacking gives it. */
  const openTreeFile = (rel: string, mode: number, size: number) => {
    const fd = fsSync.openSync(path.join(treeRoot, rel), fsSync.constants.O_RDONLY | fsSync.constants.O_NOFOLLOW);
    try {
      const st = fsSync.fstatSync(fd);
      if (!st.isFile()) throw mismatch(`"${rel}" is not a regular file`);
      if ((st.mode & 0o7777) !== (mode & ~umask)) throw mismatch(`"${rel}" has mode ${(st.mode & 0o7777).toString(8)}`);
      if (st.size !== size) throw mismatch(`"${rel}" has ${st.size} bytes, not ${size}`);
      if (uid !== undefined && st.uid !== uid) throw mismatch(`"${rel}" belongs to uid ${st.uid}`);
      return { fd, st };
    } catch (err) {
      fsSync.closeSync(fd); // not handed to the walker yet
      throw err;
    }
  };
  return {
    directory: (rel) => fsSync.mkdirSync(path.join(staging, rel), { recursive: true, mode: 0o755 }),
    file({ rel, mode, size }) {
      const { fd, st } = openTreeFile(rel, mode, size);
      return {
        fd,
        write(want, position) {
          const got = Buffer.allocUnsafe(want.length);
          const n = want.length ? fsSync.readSync(fd, got, 0, want.length, position) : 0;
          if (n !== want.length || !got.equals(want)) throw mismatch(`"${rel}" differs from the bundle`);
        },
        /** Links the verified file into staging; the link must be the very inode that was compared. */
        end() {
          const dest = path.join(staging, rel);
          fsSync.linkSync(path.join(treeRoot, rel), dest);
          const linked = fsSync.lstatSync(dest);
          if (linked.ino !== st.ino || linked.dev !== st.dev) throw mismatch(`"${rel}" changed while it was checked`);
        },
      };
    },
  };
}

/**
 * `<tree>/manifest.json`: which bundle the tree is and how many bytes it holds, for the
 * cache's accounting. It is checked (bundle, counts) but never trusted: linkFromTree
 * compares the tree with the archive itself.
 */
export type TreeManifest = { bundle: string; files: number; directories: number; bytes: number };
export const TREE_MANIFEST = 'manifest.json';

export function readTreeManifest(tree: string): TreeManifest | null {
  try {
    const m = JSON.parse(fsSync.readFileSync(path.join(tree, TREE_MANIFEST), 'utf8')) as Partial<TreeManifest>;
    const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
    if (typeof m.bundle !== 'string' || !count(m.files) || !count(m.directories) || !count(m.bytes)) return null;
    return m as TreeManifest;
  } catch {
    return null;
  }
}

/** The checks on a tree that need no archive: its layout and its manifest naming `hash`. */
export function checkTreeLayout(tree: string, hash: string): TreeManifest {
  const st = fsSync.lstatSync(tree, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw mismatch('not a directory');
  const names = fsSync.readdirSync(tree).sort();
  if (names.join('/') !== [TREE_FILES, TREE_MANIFEST].sort().join('/')) throw mismatch(`holds ${names.join(', ')}`);
  const m = readTreeManifest(tree);
  if (!m) throw mismatch('its manifest is not valid');
  if (m.bundle !== hash) throw mismatch(`its manifest names bundle ${m.bundle}`);
  return m;
}

/**
 * Builds a tree of a freshly unpacked `staging` directory in `partial` (a new directory in
 * the cache): its files hard-linked (so it costs no data writes, but needs the cache and
 * the workflow directory on one file system), then the manifest. The caller renames it
 * into place.
 */
export function buildTree(partial: string, staging: string, hash: string, counts: BundleCounts, listing: Listing): void {
  const files = path.join(partial, TREE_FILES);
  fsSync.mkdirSync(files, { mode: 0o755 });
  for (const dir of [...listing.dirs].sort()) fsSync.mkdirSync(path.join(files, dir), { mode: 0o755 });
  for (const rel of listing.files.keys()) fsSync.linkSync(path.join(staging, rel), path.join(files, rel));
  const manifest: TreeManifest = { bundle: hash, files: counts.files, directories: listing.dirs.size, bytes: counts.bytes };
  fsSync.writeFileSync(path.join(partial, TREE_MANIFEST), JSON.stringify(manifest));
}
