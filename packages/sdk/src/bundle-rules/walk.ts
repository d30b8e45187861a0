/**
 * The one walk over a bundle archive (a gzip'd tar) that stands between hostile bytes and
 * a disk or a store: the boot agent unpacks with it, and the registry checks every upload
 * with it while the bytes stream in, so both accept exactly the same bundles. node-tar
 * parses; every entry passes the EntryRules before any byte of it is used, and is then
 * handed to a sink: unpacking writes it, the agent's warm path compares it with the cached
 * tree and links it, the registry's upload check (CHECK_ONLY) drops it.
 *
 * Entries are handled synchronously, one at a time, as the parser hands them over: memory
 * stays at one chunk (or one small file) and at most one file descriptor is open, however
 * many entries the archive holds.
 *
 * The gunzip runs on libuv's thread pool (node:zlib's asynchronous stream), not on the
 * caller's thread as node-tar's own does (minizlib): while the pool inflates the next
 * chunk, this thread parses and writes the previous one, so a walk uses two cores. The
 * parser is handed plain tar; the walk itself enforces what node-tar would have on the gzip
 * (the decompression ratio, and only one layer of compression).
 */
import { type Hash, createHash } from 'node:crypto';
import fsSync from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Parser } from 'tar/parse';
import type { ReadEntry } from 'tar/read-entry';
import { type BundleCounts, type BundleLimits, type CheckedEntry, EntryRules, type Listing, UnsafeBundle } from './entry-rules.js';
import { type TreeEntry, treeDigest } from './tree-digest.js';

/** Files up to this size are collected and handed to their sink in one piece; larger ones are streamed. */
export const SMALL_FILE = 1024 * 1024;

export type CheckedFile = Extract<CheckedEntry, { type: 'file' }>;

/** Where one file's bytes go. The walker closes `fd`, if there is one, once the file ended or the walk failed. */
export type FileSink = {
  fd?: number;
  /** The next bytes of the file, which start at `position`. */
  write(chunk: Buffer, position: number): void;
  /** Every byte was written; `fd` is still open. */
  end(): void;
};

/** What a walk does with the entries that passed the rules. A sink's error fails the walk. */
export type ArchiveSink = {
  /** Creates directory `rel`: a directory entry, or the parent of `entry`'s file. Called once per directory. */
  directory(rel: string, entry: CheckedEntry): void;
  /** Opens where `file`'s bytes go; a small file is opened only once all its bytes arrived. */
  file(file: CheckedFile): FileSink;
};

/** A sink that keeps nothing: the walk only checks the archive (and digests it, if asked). */
export const CHECK_ONLY: ArchiveSink = { directory() {}, file: () => ({ write() {}, end() {} }) };

export type WalkResult = {
  counts: BundleCounts;
  listing: Listing;
  /** With `treeDigest: true`: the bundle's tree digest (see tree-digest.ts), from this same pass. */
  treeDigest?: string;
};

/** Output chunks of the gunzip: each is a round trip to the thread pool. */
const INFLATE_CHUNK = 256 * 1024;
/** Compressed bytes a walk buffers ahead of the gunzip before `write` asks its caller to wait. */
const INFLATE_BACKLOG = 256 * 1024;
/**
 * The inflated bytes reach the parser in slices of this size, each checked against the
 * decompression ratio first: the granularity node-tar's own gunzip (minizlib) has, so a
 * refusal names the same problem it would (a bad tar header before a ratio it has not reached).
 */
const PARSE_SLICE = 16 * 1024;
/** A gzip member's first bytes (ID1, ID2): node-tar's parser would gunzip a tar that starts with them again. */
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

/**
 * A walk fed by its caller: `write` each chunk of the archive (waiting when it returns a
 * promise: the gunzip is behind), then `end`; `result` settles once.
 */
export type ArchiveWalk = {
  /** Takes the next chunk of the archive; a promise means: wait for it before the next write (it never rejects). */
  write(chunk: Buffer): Promise<void> | undefined;
  end(): void;
  /** Fails the walk with `err` (the source's own failure), unless it already settled. */
  fail(err: unknown): void;
  /** True once the walk failed or finished: later chunks are ignored. */
  readonly settled: boolean;
  readonly result: Promise<WalkResult>;
};

/**
 * A walk over the archive whose bytes its caller writes, handing each checked entry to
 * `sink`, in archive order. `result` rejects with the first problem as it was raised: an
 * UnsafeBundle refusal, the sink's own error, or the parser's; callers say what it means to them.
 */
export function startArchiveWalk(limits: BundleLimits, sink: ArchiveSink, options: { treeDigest?: boolean } = {}): ArchiveWalk {
  const rules = new EntryRules(limits);
  const madeDirs = new Set<string>(['']);
  const makeDir = (rel: string, entry: CheckedEntry) => {
    if (madeDirs.has(rel)) return;
    sink.directory(rel, entry);
    madeDirs.add(rel);
  };
  // Each file's sha256, only when a tree digest was asked for: it costs a hash of every byte.
  const digested: TreeEntry[] | undefined = options.treeDigest ? [] : undefined;
  let open: FileSink | undefined;
  const closeOpen = () => {
    if (open?.fd !== undefined) fsSync.closeSync(open.fd);
    open = undefined;
  };
  let done = false;
  let resolve!: (r: WalkResult) => void;
  let reject!: (err: unknown) => void;
  const result = new Promise<WalkResult>((ok, bad) => {
    resolve = ok;
    reject = bad;
  });
  // maxMetaEntrySize: a pax header only ever carries a path (≤ 4095 bytes) and a size here;
  // node-tar would otherwise buffer up to 1 MiB of one. The parser gets plain tar (gunzipAhead,
  // below): no zstd, no brotli.
  const parser = new Parser({ strict: true, zstd: false, brotli: false, maxMetaEntrySize: 64 * 1024 });
  // It runs in microtasks and stream callbacks too: whatever happens in it, the walk rejects
  // (before any waiting writer goes on) and nothing is thrown out of it.
  const fail = (err: unknown) => {
    if (done) return;
    done = true;
    reject(err);
    try {
      closeOpen();
    } catch {
      // The file is the staging directory's, removed with it.
    } finally {
      inflate.destroy();
      parser.abort(err instanceof Error ? err : new Error(String(err)));
    }
  };
  const inflate = gunzipAhead(limits.maxRatio, { tar: (slice) => parser.write(slice), end: () => parser.end(), fail, settled: () => done });
  /** All of the open file's bytes were written: ends and closes it, and keeps its sha256 for the digest. */
  const finish = (file: CheckedFile, sha: Hash | undefined) => {
    open!.end();
    closeOpen();
    if (sha) digested!.push({ type: 'file', path: file.rel, mode: file.mode, size: file.size, sha256: sha.digest('hex') });
  };
  parser.on('entry', (entry: ReadEntry) => {
    if (done) return entry.resume();
    try {
      const checked = rules.check(entry);
      if (checked.type === 'dir') {
        makeDir(checked.rel, checked);
        entry.resume();
        return;
      }
      const parent = path.posix.dirname(checked.rel);
      makeDir(parent === '.' ? '' : parent, checked);
      const sha = digested && createHash('sha256');
      if (checked.size <= SMALL_FILE) {
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => {
          if (done) return;
          try {
            const bytes = Buffer.concat(chunks);
            open = sink.file(checked);
            open.write(bytes, 0);
            sha?.update(bytes);
            finish(checked, sha);
          } catch (err) {
            fail(err);
          }
        });
      } else {
        const file = sink.file(checked);
        open = file;
        let position = 0;
        entry.on('data', (c: Buffer) => {
          if (done) return;
          try {
            file.write(c, position);
            sha?.update(c);
            position += c.length;
          } catch (err) {
            fail(err);
          }
        });
        entry.on('end', () => {
          if (done || open !== file) return;
          try {
            finish(checked, sha);
          } catch (err) {
            fail(err);
          }
        });
      }
    } catch (err) {
      entry.resume();
      fail(err);
    }
  });
  parser.on('ignoredEntry', (entry: ReadEntry) => fail(new UnsafeBundle(`entry "${entry.path}" has an unsupported type (${entry.type})`)));
  parser.on('error', fail);
  parser.on('abort', fail);
  parser.on('end', () => {
    if (done) return;
    const { counts, listing } = rules;
    if (counts.files + counts.directories === 0) return fail(new UnsafeBundle('the archive holds no entries'));
    done = true;
    // The tar ended (its end-of-archive blocks): what the gzip may still hold after it is not read.
    inflate.destroy();
    if (!digested) return resolve({ counts, listing });
    const dirs = [...listing.dirs].map((d): TreeEntry => ({ type: 'dir', path: d }));
    resolve({ counts, listing, treeDigest: treeDigest([...digested, ...dirs]) });
  });
  return {
    write: (chunk) => (done ? undefined : inflate.write(chunk)),
    end: () => {
      if (!done) inflate.end();
    },
    fail,
    get settled() {
      return done;
    },
    result,
  };
}

/**
 * The gunzip ahead of the parser: node:zlib on the thread pool, each inflated chunk handed to
 * `to.tar` in 16 KiB slices in a microtask, after zlib has sent the pool the next chunk to
 * inflate (a 'data' handler runs before that, and would not overlap). It enforces what
 * node-tar enforced on a gzip it inflated itself: the decompression ratio, and one layer of
 * compression. `write` returns a promise while the gunzip is behind, released by its drain
 * or by `destroy`.
 */
function gunzipAhead(
  maxRatio: number,
  to: { tar(slice: Buffer): void; end(): void; fail(err: unknown): void; settled(): boolean },
): { write(chunk: Buffer): Promise<void> | undefined; end(): void; destroy(): void } {
  // node:zlib passes stream options on to its Transform (@types/node's ZlibOptions leaves them out).
  const gunzip = zlib.createGunzip({ chunkSize: INFLATE_CHUNK, writableHighWaterMark: INFLATE_BACKLOG } as zlib.ZlibOptions);
  let waiting: (() => void)[] = [];
  const release = () => {
    const released = waiting;
    waiting = [];
    for (const go of released) go();
  };
  gunzip.on('drain', release);
  // The ratio's denominator, as node-tar counts it: every compressed byte up to the end of the
  // chunk being inflated (a chunk counts whole once inflating it began), not the bytes still
  // waiting in the gunzip's buffer.
  let compressed = 0;
  const chunkEnds: number[] = [];
  const countedCompressed = () => {
    const consumed = gunzip.bytesWritten;
    while (chunkEnds.length > 1 && chunkEnds[0]! < consumed) chunkEnds.shift();
    return Math.max(1, chunkEnds[0] ?? compressed);
  };
  let inflated = 0;
  // The first bytes of the tar, held until there are enough to tell a second gzip layer.
  let head: Buffer | undefined = Buffer.alloc(0);
  const toParser = (chunk: Buffer, counted: number) => {
    if (to.settled()) return;
    try {
      if (head) {
        head = Buffer.concat([head, chunk]);
        if (head.length < GZIP_MAGIC.length) return;
        chunk = head;
        head = undefined;
        if (chunk.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) {
          throw new UnsafeBundle('the archive inside the gzip is compressed again; a bundle is one gzip over a tar');
        }
      }
      for (let at = 0; at < chunk.length && !to.settled(); at += PARSE_SLICE) {
        const slice = chunk.subarray(at, at + PARSE_SLICE);
        inflated += slice.length;
        const ratio = inflated / counted;
        if (ratio > maxRatio) throw new Error(`max decompression ratio exceeded: ${ratio.toFixed(2)} > ${maxRatio}`);
        to.tar(slice);
      }
    } catch (err) {
      to.fail(err);
    }
  };
  // The denominator is read here: zlib updates bytesWritten just before it hands the chunk over.
  gunzip.on('data', (chunk: Buffer) => {
    const counted = countedCompressed();
    queueMicrotask(() => toParser(chunk, counted));
  });
  gunzip.on('end', () =>
    queueMicrotask(() => {
      if (to.settled()) return;
      try {
        if (head?.length) to.tar(head); // shorter than a gzip header: the parser refuses it as it would
        head = undefined;
        to.end();
      } catch (err) {
        to.fail(err);
      }
    }),
  );
  gunzip.on('error', (err: Error) => to.fail(new Error(`zlib: ${err.message}`)));
  return {
    write(chunk) {
      compressed += chunk.length;
      chunkEnds.push(compressed);
      if (gunzip.write(chunk)) return undefined;
      return new Promise<void>((go) => waiting.push(go));
    },
    end: () => gunzip.end(),
    destroy() {
      gunzip.destroy();
      release();
    },
  };
}

/** Walks the archive read from `source` (see startArchiveWalk). */
export function walkArchive(
  source: AsyncIterable<Buffer> | Iterable<Buffer>,
  limits: BundleLimits,
  sink: ArchiveSink,
  options: { treeDigest?: boolean } = {},
): Promise<WalkResult> {
  const walk = startArchiveWalk(limits, sink, options);
  // Leaving the loop early (a failure) closes the source: its iterator's return() runs.
  (async () => {
    for await (const chunk of source) {
      if (walk.settled) return;
      await walk.write(chunk);
    }
    walk.end();
  })().catch(walk.fail);
  return walk.result;
}
