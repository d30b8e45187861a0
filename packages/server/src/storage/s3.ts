/**
 * The production store: any S3-compatible service (MinIO in production, Swift's s3api
 * in tests) through the minio client, path-style addressing, SigV4.
 */
import type { Readable } from 'node:stream';
import * as Minio from 'minio';
import type { S3Config } from '../config.js';
import { type ObjectInfo, ObjectNotFound, type StorageDriver } from './driver.js';

/**
 * Part size for uploads. The registry does its own multipart loop (see put) so that at
 * most two parts are in memory: one being filled from the client, one being sent.
 * 8 MiB parts allow objects up to 80 GiB (10,000 parts).
 */
const PART_SIZE = 8 * 1024 * 1024;

function clientFor(endpoint: string, cfg: S3Config): Minio.Client {
  const url = new URL(endpoint);
  const useSSL = url.protocol === 'https:';
  return new Minio.Client({
    endPoint: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port ? Number(url.port) : useSSL ? 443 : 80,
    useSSL,
    accessKey: cfg.accessKey,
    secretKey: cfg.secretKey,
    // Setting the region avoids a GetBucketLocation round trip before each presign.
    region: cfg.region,
    pathStyle: true,
  });
}

const isNotFound = (err: unknown) => {
  const code = (err as { code?: string }).code;
  return code === 'NotFound' || code === 'NoSuchKey' || code === 'NoSuchObject';
};

/** The store's own "no such key", as the ObjectNotFound every driver throws. */
const notFoundAs = (key: string) => (err: unknown) => {
  throw isNotFound(err) ? new ObjectNotFound(key, { cause: err }) : err;
};

export class S3Driver implements StorageDriver {
  readonly kind = 's3' as const;
  private readonly client: Minio.Client;
  private readonly presigners = new Map<string, Minio.Client>();

  constructor(private readonly cfg: S3Config) {
    this.client = clientFor(cfg.endpoint, cfg);
  }

  async init(): Promise<void> {
    if (!(await this.client.bucketExists(this.cfg.bucket))) {
      await this.client.makeBucket(this.cfg.bucket, this.cfg.region).catch(async (err) => {
        // Another replica may have created it in between.
        if (!(await this.client.bucketExists(this.cfg.bucket))) throw err;
      });
    }
  }

  async check(): Promise<void> {
    if (!(await this.client.bucketExists(this.cfg.bucket))) throw new Error(`bucket ${this.cfg.bucket} does not exist`);
  }

  /**
   * Streams `body` to the store. minio's own stream upload queues up to 16 parts when
   * the store is slower than the client (128 MiB with 8 MiB parts), so the parts are
   * cut and sent here: reading pauses while one part is in flight and the next is full.
   * A body that fits in one part is sent with a single PUT.
   */
  async put(key: string, body: Readable): Promise<void> {
    await this.upload(key, body);
  }

  /**
   * Like put, but the object appears under `key` only if `verify` (called once every byte
   * arrived) resolves true: the parts go straight to `key`'s multipart upload, which is
   * completed after `verify` and aborted otherwise, and a body smaller than one part is
   * PUT only after `verify`. Until completion a multipart upload is invisible to readers,
   * so this stores the bytes once where put-then-copy would store them twice.
   */
  async putVerified(key: string, body: Readable, verify: () => Promise<boolean>): Promise<boolean> {
    return this.upload(key, body, verify);
  }

  private async upload(key: string, body: Readable, verify?: () => Promise<boolean>): Promise<boolean> {
    const { bucket } = this.cfg;
    const buffers = [Buffer.allocUnsafe(PART_SIZE), Buffer.allocUnsafe(PART_SIZE)];
    let current = 0;
    let filled = 0;
    let uploadId: string | undefined;
    let inFlight: Promise<void> | undefined;
    let nextPart = 1;
    const parts: Array<{ part: number; etag: string }> = [];

    const sendPart = async (data: Buffer, part: number) => {
      uploadId ??= await this.client.initiateNewMultipartUpload(bucket, key, {});
      const res = await this.client.uploadPart(
        { bucketName: bucket, objectName: key, uploadID: uploadId, partNumber: part, headers: { 'Content-Length': data.length } },
        data,
      );
      parts.push({ part, etag: res.etag });
    };

    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        for (let offset = 0; offset < chunk.length; ) {
          const n = chunk.copy(buffers[current]!, filled, offset);
          filled += n;
          offset += n;
          if (filled < PART_SIZE) continue;
          await inFlight;
          inFlight = sendPart(buffers[current]!, nextPart++);
          inFlight.catch(() => {}); // awaited below; this only silences the interim
          current = 1 - current;
          filled = 0;
        }
      }
      await inFlight;
      if (nextPart === 1) {
        if (verify && !(await verify())) return false;
        await this.client.putObject(bucket, key, buffers[current]!.subarray(0, filled));
        return true;
      }
      if (filled > 0) await sendPart(buffers[current]!.subarray(0, filled), nextPart++);
      if (verify && !(await verify())) {
        await this.client.abortMultipartUpload(bucket, key, uploadId!);
        return false;
      }
      parts.sort((a, b) => a.part - b.part);
      await this.client.completeMultipartUpload(bucket, key, uploadId!, parts);
      return true;
    } catch (err) {
      body.destroy();
      await inFlight?.catch(() => {});
      if (uploadId) await this.client.abortMultipartUpload(bucket, key, uploadId).catch(() => {});
      throw err;
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const st = await this.client.statObject(this.cfg.bucket, key);
      return { key, size: st.size, lastModified: st.lastModified };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async get(key: string, range?: { offset: number; length?: number }): Promise<Readable> {
    const read = range
      ? this.client.getPartialObject(this.cfg.bucket, key, range.offset, range.length)
      : this.client.getObject(this.cfg.bucket, key);
    return read.catch(notFoundAs(key));
  }

  async move(src: string, dst: string): Promise<void> {
    await this.client
      .copyObject(
        new Minio.CopySourceOptions({ Bucket: this.cfg.bucket, Object: src }),
        new Minio.CopyDestinationOptions({ Bucket: this.cfg.bucket, Object: dst }),
      )
      .catch(notFoundAs(src));
    await this.delete(src);
  }

  async delete(key: string): Promise<void> {
    await this.client.removeObject(this.cfg.bucket, key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const item of this.client.listObjectsV2(this.cfg.bucket, prefix, true)) {
      const o = item as Minio.BucketItem;
      if (o.name) yield { key: o.name, size: o.size, lastModified: o.lastModified };
    }
  }

  async abortIncompleteUploads(prefix: string, before: Date, depth = 0): Promise<number> {
    const { bucket } = this.cfg;
    let aborted = 0;
    let keyMarker = '';
    let uploadIdMarker = '';
    const below = new Set<string>();
    // Bounded: at most 100 pages of (up to) 1000 uploads.
    for (let page = 0; page < 100; page++) {
      // Delimiter '/' (Swift's s3api takes an empty delimiter literally, rolling every key
      // up into one common prefix): deeper keys (blobs/sha256/<hh>/<hash>) come back as
      // common prefixes of keys with uploads in progress, listed in turn below.
      const res = await this.client.listIncompleteUploadsQuery(bucket, prefix, keyMarker, uploadIdMarker, '/');
      for (const u of res.uploads) {
        if (u.initiated >= before) continue;
        await this.client.abortMultipartUpload(bucket, u.key, u.uploadId);
        aborted++;
      }
      for (const p of res.prefixes as unknown as Array<{ prefix: string }>) below.add(p.prefix);
      if (!res.isTruncated) break;
      keyMarker = res.nextKeyMarker;
      uploadIdMarker = res.nextUploadIdMarker;
    }
    if (depth < 4) for (const p of below) aborted += await this.abortIncompleteUploads(p, before, depth + 1);
    return aborted;
  }

  /**
   * SigV4 signs the Host header, so the URL is signed for the address the downloader
   * will use: `endpoint` when given (a VM's view of the store), else S3_PUBLIC_ENDPOINT.
   * Signing is local; no request is made.
   */
  async presignGet(key: string, ttlSeconds: number, endpoint = this.cfg.publicEndpoint, signedAt = new Date()): Promise<string> {
    let presigner = this.presigners.get(endpoint);
    if (!presigner) {
      presigner = clientFor(endpoint, this.cfg);
      this.presigners.set(endpoint, presigner);
    }
    return presigner.presignedGetObject(this.cfg.bucket, key, ttlSeconds, {}, signedAt);
  }
}
