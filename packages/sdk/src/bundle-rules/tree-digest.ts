/**
 * A bundle's tree digest: a hash of what the bundle unpacks to, not of how it was packed
 * (entry order, tar headers, owners, timestamps and compression do not count), the
 * analogue of an OCI layer's diff_id. The boot agent can check an unpacked tree against
 * it by hashing the files, without the archive; the registry computes it at upload and
 * the SDK at push, all with this one definition.
 *
 * Canonical encoding, version 1. The digest is the lowercase hex sha256 of the UTF-8 bytes
 *
 *     "swarm-tree-v1\n" record record …
 *
 * with one record per file and per directory of the unpacked tree, sorted by path in
 * UTF-8 byte order:
 *
 *     file:      "file <mode> <size> <sha256> <path>\0"
 *     directory: "dir 755 0 - <path>\0"
 *
 * - <path> is relative to the bundle root, segments joined by "/", with no "." or empty
 *   segment and no leading or trailing "/"; the root itself has no record. Every
 *   directory has one, also those only implied by a file's path. A path never holds a
 *   NUL (the entry rules refuse it), so NUL ends a record unambiguously.
 * - <mode> is the mode the file is unpacked with, in octal: 644 or 755 (unpackedMode),
 *   never the archive's mode bits.
 * - <size> is the file's length in bytes, in decimal; <sha256> the lowercase hex sha256
 *   of its bytes.
 */
import { createHash } from 'node:crypto';

export type TreeEntry = { type: 'dir'; path: string } | { type: 'file'; path: string; mode: number; size: number; sha256: string };

const TREE_DIGEST_HEADER = 'swarm-tree-v1\n';

/** The tree digest of `entries` (each path once; files with their unpacked mode). */
export function treeDigest(entries: Iterable<TreeEntry>): string {
  const records = [...entries].map((e) => ({
    path: Buffer.from(e.path),
    fields: e.type === 'file' ? `file ${e.mode.toString(8)} ${e.size} ${e.sha256} ` : 'dir 755 0 - ',
  }));
  records.sort((a, b) => Buffer.compare(a.path, b.path));
  const sha = createHash('sha256').update(TREE_DIGEST_HEADER);
  for (const r of records) sha.update(r.fields).update(r.path).update('\0');
  return sha.digest('hex');
}
