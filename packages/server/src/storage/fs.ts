/**
 * The embedded default store: objects are files under a root directory. Download URLs
 * point at the registry's own /store route and carry an HMAC of key and expiry.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type ObjectInfo, ObjectNotFound, type StorageDriver } from './driver.js';

export type FsDriverOptions = {
  root: string;
  /** Base URL of the registry's API as downloaders reach it (known only once the server listens). */
  publicUrl: () => string;
  signingKey: string;
};

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** ENOENT as the ObjectNotFound every driver throws. */
const notFoundAs = (key: string) => (err: unknown) => {
  throw isMissing(err) ? new ObjectNotFound(key, { cause: err }) : err;
};

export class FsDriver implements StorageDriver {
  readonly kind = 'fs' as const;
  constructor(private readonly opts: FsDriverOptions) {}

  private file(key: string): string {
    // Keys come from the registry itself, but a path must never leave the root.
    const file = path.resolve(this.opts.root, key);
    if (!file.startsWith(this.opts.root + path.sep)) throw new Error(`invalid object key: ${key}`);
    return file;
  }

  async init(): Promise<void> {
    await fs.mkdir(this.opts.root, { recursive: true });
  }

  async check(): Promise<void> {
    await fs.access(this.opts.root, fs.constants.W_OK);
  }

  async put(key: string, body: Readable): Promise<void> {
    const file = this.file(key);
    await fs.mkdir(path.dirname(file), { recursive: true });
    // Written beside the key and renamed over it, as S3 replaces an object: a reader sees
    // the old object or the whole new one, and a failed put leaves the old one in place.
    const partial = `${file}.partial-${randomBytes(8).toString('hex')}`;
    try {
      // flush: fsync before close, so a stored object survives a crash.
      await pipeline(body, createWriteStream(partial, { flags: 'wx', flush: true }));
      await fs.rename(partial, file);
    } catch (err) {
      await fs.rm(partial, { force: true });
      throw err;
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const st = await fs.stat(this.file(key)).catch((err: unknown) => {
      if (isMissing(err)) return null;
      throw err;
    });
    return st?.isFile() ? { key, size: st.size, lastModified: st.mtime } : null;
  }

  async get(key: string, range?: { offset: number; length?: number }): Promise<Readable> {
    const file = this.file(key);
    // Opened first, so a missing object fails here, before a stream exists.
    const handle = await fs.open(file, 'r').catch(notFoundAs(key));
    const end = range?.length !== undefined ? range.offset + range.length - 1 : undefined;
    return handle.createReadStream({ start: range?.offset, end });
  }

  async move(src: string, dst: string): Promise<void> {
    const to = this.file(dst);
    await fs.mkdir(path.dirname(to), { recursive: true });
    await fs.rename(this.file(src), to).catch(notFoundAs(src));
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.file(key), { force: true });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const entries = await fs.readdir(this.opts.root, { recursive: true, withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isFile()) continue;
      const key = path.relative(this.opts.root, path.join(e.parentPath, e.name)).split(path.sep).join('/');
      if (!key.startsWith(prefix)) continue;
      const info = await this.stat(key);
      if (info) yield info;
    }
  }

  async presignGet(key: string, ttlSeconds: number, endpoint?: string, signedAt = new Date()): Promise<string> {
    const expires = Math.floor(signedAt.getTime() / 1000) + ttlSeconds;
    const base = endpoint ?? this.opts.publicUrl();
    const url = new URL(`${base}/store/${key}`);
    url.searchParams.set('expires', String(expires));
    url.searchParams.set('signature', this.sign(key, expires));
    return url.toString();
  }

  /** Checks a /store URL's signature and expiry; returns whether it may be served. */
  verifySignedUrl(key: string, expires: number, signature: string): 'ok' | 'expired' | 'invalid' {
    const expected = Buffer.from(this.sign(key, expires));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
    return expires * 1000 < Date.now() ? 'expired' : 'ok';
  }

  private sign(key: string, expires: number): string {
    return createHmac('sha256', this.opts.signingKey).update(`GET\n${key}\n${expires}`).digest('base64url');
  }
}
