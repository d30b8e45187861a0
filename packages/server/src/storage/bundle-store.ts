/**
 * Content-addressed bundles on top of a storage driver. The one invariant: nothing is
 * ever readable under blobs/sha256/<hash> unless its bytes hash to <hash>. Uploads are
 * hashed in flight. When the caller declared the hash (the SDK always does) and the
 * driver can hold an object back until it is verified (S3: a multipart upload is
 * invisible until completed), the bytes go straight to their address and are published
 * only if they hash to it. Otherwise they go to uploads/<random id> and are moved to
 * their address once the hash is known: on S3 a copy, so those bytes are stored twice.
 */
import { LRUCache } from 'lru-cache';
import { createHash, randomUUID } from 'node:crypto';
import { type Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { RegistryError } from '../errors.js';
import type { ObjectInfo, StorageDriver } from './driver.js';

export const BLOBS_PREFIX = 'blobs/';
export const blobKey = (hash: string) => `${BLOBS_PREFIX}sha256/${hash.slice(0, 2)}/${hash}`;
export const UPLOADS_PREFIX = 'uploads/';

export type IngestResult = { hash: string; size: number /** false: the store already had these bytes */; stored: boolean };

export type IngestOptions = {
  maxBytes: number;
  /** The hash the caller says the bytes have: a mismatch stores nothing. */
  declaredHash?: string;
  /** Bytes already at the declared address need only be hashed, not stored again. */
  alreadyStored?: boolean;
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
    if (opts.alreadyStored && opts.declaredHash) {
      await pipeline(body, meter, new Writable({ write: (_c, _e, cb) => cb() }));
      const hash = this.checkDeclared(meter, opts.declaredHash);
      return { hash, size: meter.bytes, stored: false };
    }

    if (opts.declaredHash && this.driver.putVerified) return this.ingestDeclared(body, meter, opts.declaredHash);

    const tempKey = `${UPLOADS_PREFIX}${randomUUID()}`;
    const [piped, put] = await Promise.allSettled([
      pipeline(body, meter),
      this.driver.put(tempKey, meter).catch((err) => {
        meter.destroy(err);
        throw err;
      }),
    ]);
    try {
      if (piped.status === 'rejected') throw piped.reason;
      if (put.status === 'rejected') throw put.reason;
      const hash = this.checkDeclared(meter, opts.declaredHash);
      const existing = await this.driver.stat(blobKey(hash));
      if (existing?.size === meter.bytes) {
        await this.driver.delete(tempKey);
        return { hash, size: meter.bytes, stored: false };
      }
      await this.driver.move(tempKey, blobKey(hash));
      return { hash, size: meter.bytes, stored: true };
    } catch (err) {
      await this.driver.delete(tempKey).catch(() => {});
      throw err;
    }
  }

  /** Straight to the declared address, published only once verified; bytes already there are not stored again. */
  private async ingestDeclared(body: Readable, meter: HashingMeter, declared: string): Promise<IngestResult> {
    const key = blobKey(declared);
    const [piped, put] = await Promise.allSettled([
      pipeline(body, meter),
      this.driver.putVerified!(key, meter, async () => {
        this.checkDeclared(meter, declared);
        return (await this.driver.stat(key))?.size !== meter.bytes;
      }).catch((err) => {
        meter.destroy(err);
        throw err;
      }),
    ]);
    if (piped.status === 'rejected') throw piped.reason;
    if (put.status === 'rejected') throw put.reason;
    return { hash: declared, size: meter.bytes, stored: put.value };
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
