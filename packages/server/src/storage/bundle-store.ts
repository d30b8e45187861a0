/**
 * Content-addressed bundles on top of a storage driver. The one invariant: nothing is
 * ever readable under blobs/sha256/<hash> unless its bytes hash to <hash> and pass the
 * bundle rules the boot agent applies. Uploads are hashed and checked in flight (the
 * archive is walked by @swarm/sdk/bundle-rules' walker as it streams in, which also
 * computes the bundle's tree digest from the same pass). When the caller
 * declared the hash (the SDK always does) and the driver can hold an object back until it
 * is verified (S3: a multipart upload is invisible until completed), the bytes go straight
 * to their address and are published only if they hash to it. Otherwise they go to
 * uploads/<random id> and are moved to their address once the hash is known: on S3 a
 * copy, so those bytes are stored twice.
 *
 * Every upload takes this whole path, also when the store already holds the same bytes
 * (they are replaced by identical ones): whether another tenant stored a bundle must not
 * show in how long an upload takes, in what it writes, or in the metrics.
 */
import { LRUCache } from 'lru-cache';
import { createHash, randomUUID } from 'node:crypto';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ArchiveWalk, type BundleLimits, CHECK_ONLY, UnsafeBundle, startArchiveWalk } from '@swarm/sdk/bundle-rules';
import { RegistryError } from '../errors.js';
import type { ObjectInfo, StorageDriver } from './driver.js';

export const BLOBS_PREFIX = 'blobs/';
export const blobKey = (hash: string) => `${BLOBS_PREFIX}sha256/${hash.slice(0, 2)}/${hash}`;
export const UPLOADS_PREFIX = 'uploads/';

/** `treeDigest`: the digest of what the bundle unpacks to (bundle-rules' treeDigest), from the same pass. */
export type IngestResult = { hash: string; size: number; treeDigest: string };

export type IngestOptions = {
  maxBytes: number;
  /** What the archive may hold: the boot agent's rules. A refusal stores nothing. */
  limits: BundleLimits;
  /** The hash the caller says the bytes have: a mismatch stores nothing. */
  declaredHash?: string;
  onBytes?: (n: number) => void;
};

/** Counts and hashes the bytes that pass, and fails the stream once it exceeds its cap. */
export class HashingMeter extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  constructor(
    private readonly maxBytes: number,
    private readonly onBytes?: (n: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      done(
        new RegistryError(
          'PAYLOAD_TOO_LARGE',
          `bundle exceeds the limit of ${this.maxBytes} bytes`,
          'raise SWARM_MAX_BUNDLE_BYTES on the registry, or make the bundle smaller',
        ),
      );
      return;
    }
    this.hash.update(chunk);
    this.onBytes?.(chunk.length);
    done(null, chunk);
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** A refused archive: 422 naming the entry and the rule, or what is wrong with the gzip or the tar. */
function refusal(err: unknown): RegistryError {
  const reason = err instanceof UnsafeBundle ? err.message : `not a valid bundle: ${(err as Error).message}`;
  return new RegistryError(
    'UNPROCESSABLE_CONTENT',
    `the bundle is refused: ${reason}; nothing was stored`,
    "a VM's boot agent would refuse it too; pack the directory with `swarm push` (or tar -czf) from regular files and directories",
  );
}

/**
 * Passes the bytes through unchanged while walking them as a bundle archive (gzip'd tar)
 * under the boot agent's entry rules; fails the stream at the first refusal, and at its
 * end unless the archive was whole and valid, so the store never completes a refused one.
 */
export class ArchiveCheck extends Transform {
  private readonly walk: ArchiveWalk;
  private head = Buffer.alloc(0);
  /** The bundle's tree digest, once the whole archive passed (set before the stream finishes). */
  treeDigest: string | undefined;
  constructor(limits: BundleLimits) {
    super();
    this.walk = startArchiveWalk(limits, CHECK_ONLY, { treeDigest: true });
    this.walk.result.catch((err: unknown) => this.destroy(refusal(err)));
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.head.length < 2) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, 2)]);
      if (this.head.length >= 2 && (this.head[0] !== 0x1f || this.head[1] !== 0x8b)) {
        done(refusal(new UnsafeBundle('the bundle is not gzip-compressed')));
        return;
      }
    }
    // The bytes go on once the walk's gunzip has room for them: an upload is not held in memory.
    const wait = this.walk.write(chunk);
    if (wait) void wait.then(() => done(null, chunk));
    else done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    // An empty body is the caller's to report (400), not an archive to refuse.
    if (this.head.length === 0) {
      done();
      return;
    }
    if (this.head.length < 2) {
      done(refusal(new UnsafeBundle('the bundle is not gzip-compressed')));
      return;
    }
    this.walk.end();
    this.walk.result.then(
      (r) => {
        this.treeDigest = r.treeDigest;
        done();
      },
      (err: unknown) => done(refusal(err)),
    );
  }
  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.walk.fail(err ?? new Error('upload ended'));
    done(err);
  }
}

/** The digest the check computed: an accepted archive always has one (an empty body never gets this far). */
function checkedDigest(checked: ArchiveCheck): string {
  if (!checked.treeDigest) throw new Error('the archive check finished without a tree digest');
  return checked.treeDigest;
}

export class BundleStore {
  private readonly urls: LRUCache<string, SignedUrl> | undefined;

  constructor(
    readonly driver: StorageDriver,
    opts: { reuseUrls?: boolean } = {},
  ) {
    this.urls = opts.reuseUrls ? new LRUCache({ max: 10_000 }) : undefined;
  }

  async ingest(body: Readable, opts: IngestOptions): Promise<IngestResult> {
    const meter = new HashingMeter(opts.maxBytes, opts.onBytes);
    const checked = new ArchiveCheck(opts.limits);
    if (opts.declaredHash && this.driver.putVerified) return this.ingestDeclared(body, meter, checked, opts.declaredHash);

    const tempKey = `${UPLOADS_PREFIX}${randomUUID()}`;
    const [piped, put] = await Promise.allSettled([
      pipeline(body, meter, checked),
      this.driver.put(tempKey, checked).catch((err) => {
        checked.destroy(err);
        throw err;
      }),
    ]);
    try {
      if (piped.status === 'rejected') throw piped.reason;
      if (put.status === 'rejected') throw put.reason;
      const hash = this.checkDeclared(meter, opts.declaredHash);
      await this.driver.move(tempKey, blobKey(hash));
      return { hash, size: meter.bytes, treeDigest: checkedDigest(checked) };
    } catch (err) {
      await this.driver.delete(tempKey).catch(() => {});
      throw err;
    }
  }

  /** Straight to the declared address, published only once verified and checked. */
  private async ingestDeclared(body: Readable, meter: HashingMeter, checked: ArchiveCheck, declared: string): Promise<IngestResult> {
    const key = blobKey(declared);
    const [piped, put] = await Promise.allSettled([
      pipeline(body, meter, checked),
      this.driver.putVerified!(key, checked, async () => {
        this.checkDeclared(meter, declared);
        return true;
      }).catch((err) => {
        checked.destroy(err);
        throw err;
      }),
    ]);
    if (piped.status === 'rejected') throw piped.reason;
    if (put.status === 'rejected') throw put.reason;
    return { hash: declared, size: meter.bytes, treeDigest: checkedDigest(checked) };
  }

  private checkDeclared(meter: HashingMeter, declared: string | undefined): string {
    if (meter.bytes === 0) throw new RegistryError('BAD_REQUEST', 'the request body is empty; send the bundle bytes');
    const hash = meter.digest();
    if (declared && declared !== hash) {
      throw new RegistryError(
        'UNPROCESSABLE_CONTENT',
        `the body's sha256 is ${hash}, but X-Bundle-Sha256 declared ${declared}; nothing was stored`,
        'the bundle changed or was truncated on the way; hash the file again and retry',
      );
    }
    return hash;
  }

  /**
   * Removes what crashed uploads left: objects under uploads/ and, on S3, unfinished
   * multipart uploads under uploads/ and blobs/ (uploads with a declared hash go straight
   * to their address), older than `olderThanMs`. Younger ones are left alone: they may be
   * uploads in flight on this or another replica. Bounded to `limit` removals per call.
   */
  async sweepUploads(olderThanMs: number, limit = 10_000): Promise<{ objects: number; multipart: number; kept: number }> {
    const before = new Date(Date.now() - olderThanMs);
    let objects = 0;
    let kept = 0;
    for await (const o of this.driver.list(UPLOADS_PREFIX)) {
      if (o.lastModified >= before) {
        kept++;
        continue;
      }
      await this.driver.delete(o.key);
      if (++objects >= limit) break;
    }
    let multipart = 0;
    for (const prefix of [UPLOADS_PREFIX, BLOBS_PREFIX]) multipart += (await this.driver.abortIncompleteUploads?.(prefix, before)) ?? 0;
    return { objects, multipart, kept };
  }

  stat(hash: string) {
    return this.driver.stat(blobKey(hash));
  }

  /** The bundle's bytes; rejects with ObjectNotFound when none are stored under its hash. */
  read(hash: string): Promise<Readable> {
    return this.driver.get(blobKey(hash));
  }

  delete(hash: string): Promise<void> {
    return this.driver.delete(blobKey(hash));
  }

  /** Every object under the content-address prefix, with the hash its key names. */
  async *listBlobs(): AsyncIterable<ObjectInfo & { hash: string }> {
    for await (const o of this.driver.list(BLOBS_PREFIX)) {
      const hash = o.key.slice(o.key.lastIndexOf('/') + 1);
      if (o.key === blobKey(hash)) yield { ...o, hash };
    }
  }

  /**
   * A download URL for the bundle and the moment it expires. With `reuseUrls`, a URL
   * signed earlier for the same bundle, lifetime and endpoint is handed out again while
   * more than half its lifetime is left: signing costs four HMACs and a hash (S3 SigV4),
   * a measurable share of a cached resolve. The expiry returned is the URL's own.
   */
  async signedUrl(hash: string, ttlSeconds: number, endpoint?: string): Promise<SignedUrl> {
    const now = Date.now();
    const key = `${ttlSeconds} ${endpoint ?? ''} ${hash}`;
    const reused = this.urls?.get(key);
    if (reused && reused.expiresAt.getTime() - now > (ttlSeconds * 1000) / 2) return reused;
    // Whole seconds, as both drivers count: the expiry below is exactly the URL's.
    const signedAt = new Date(Math.floor(now / 1000) * 1000);
    const url = await this.driver.presignGet(blobKey(hash), ttlSeconds, endpoint, signedAt);
    const signed = { url, expiresAt: new Date(signedAt.getTime() + ttlSeconds * 1000) };
    this.urls?.set(key, signed);
    return signed;
  }
}

export type SignedUrl = { url: string; expiresAt: Date };
