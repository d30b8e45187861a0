/**
 * The production store: any S3-compatible service (MinIO in production, Swift's s3api
 * in tests) through the minio client, path-style addressing, SigV4.
 */
import { PassThrough, type Readable } from 'node:stream';
import * as Minio from 'minio';
import type { S3Config } from '../config.js';
import type { ObjectInfo, StorageDriver } from './driver.js';

/**
 * The minio client buffers one part in memory while it uploads the previous one.
 * 8 MiB parts keep an upload's footprint near 16 MiB (the client's default for a
 * stream of unknown length would be 500+ MiB parts) and allow objects up to 80 GiB.
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
    partSize: PART_SIZE,
  });
}

const isNotFound = (err: unknown) => {
  const code = (err as { code?: string }).code;
  return code === 'NotFound' || code === 'NoSuchKey' || code === 'NoSuchObject';
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

  async put(key: string, body: Readable, size?: number): Promise<void> {
    // The minio client pipes `body` without listening for its errors, so a failing
    // source would hang the upload. Feed it through a stream we end ourselves, then
    // throw away whatever reached the store.
    const feed = new PassThrough();
    let failure: unknown;
    body.once('error', (err) => {
      failure ??= err;
      feed.end();
    });
    body.pipe(feed);
    try {
      await this.client.putObject(this.cfg.bucket, key, feed, size);
    } catch (err) {
      failure ??= err;
      body.destroy();
    }
    if (failure !== undefined) {
      await this.delete(key).catch(() => {});
      // A failed multipart upload leaves its parts behind until aborted.
      await this.client.removeIncompleteUpload(this.cfg.bucket, key).catch(() => {});
      throw failure;
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
    return range
      ? this.client.getPartialObject(this.cfg.bucket, key, range.offset, range.length)
      : this.client.getObject(this.cfg.bucket, key);
  }

  async move(src: string, dst: string): Promise<void> {
    await this.client.copyObject(
      new Minio.CopySourceOptions({ Bucket: this.cfg.bucket, Object: src }),
      new Minio.CopyDestinationOptions({ Bucket: this.cfg.bucket, Object: dst }),
    );
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

  /**
   * SigV4 signs the Host header, so the URL is signed for the address the downloader
   * will use: `endpoint` when given (a VM's view of the store), else S3_PUBLIC_ENDPOINT.
   * Signing is local; no request is made.
   */
  async presignGet(key: string, ttlSeconds: number, endpoint = this.cfg.publicEndpoint): Promise<string> {
    let presigner = this.presigners.get(endpoint);
    if (!presigner) {
      presigner = clientFor(endpoint, this.cfg);
      this.presigners.set(endpoint, presigner);
    }
    return presigner.presignedGetObject(this.cfg.bucket, key, ttlSeconds);
  }
}
