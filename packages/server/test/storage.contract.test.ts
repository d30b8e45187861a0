/**
 * The storage driver contract: every driver (fs, s3) must pass the same suite, against
 * a live registry so that the fs driver's signed /store URLs are served for real.
 */
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StorageDriver } from '../src/storage/driver.js';
import { type StorageKind, type TestRegistry, bundleBytes, startTestRegistry } from '../../../test/support/registry.js';

const read = async (r: Readable) => Buffer.concat(await r.toArray());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each<StorageKind>(['fs', 's3'])('%s driver', (kind) => {
  let reg: TestRegistry;
  let driver: StorageDriver;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: kind });
    driver = reg.deps.store.driver;
  });
  afterAll(() => reg?.close());

  it('stores a stream and reads it back, whole and by range', async () => {
    const data = bundleBytes('contract', 3 * 1024 * 1024 + 17);
    await driver.put('t/obj', Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
    expect(await driver.stat('t/obj')).toMatchObject({ key: 't/obj', size: data.length });
    expect((await read(await driver.get('t/obj'))).equals(data)).toBe(true);
    expect((await read(await driver.get('t/obj', { offset: 10, length: 100 }))).equals(data.subarray(10, 110))).toBe(true);
    expect((await read(await driver.get('t/obj', { offset: data.length - 5 }))).equals(data.subarray(-5))).toBe(true);
  });

  it('answers null for a missing object and fails to read it', async () => {
    expect(await driver.stat('t/missing')).toBeNull();
    await expect(driver.get('t/missing').then(read)).rejects.toThrow();
  });

  it('leaves nothing behind when the source stream fails', async () => {
    const failing = new Readable({
      read() {
        this.push(bundleBytes('partial', 64 * 1024));
        this.destroy(new Error('client went away'));
      },
    });
    await expect(driver.put('t/failed', failing)).rejects.toThrow();
    expect(await driver.stat('t/failed')).toBeNull();
  });

  it('moves an object and deletes idempotently', async () => {
    await driver.put('t/src', Readable.from([Buffer.from('move me')]));
    await driver.move('t/src', 't/dst');
    expect(await driver.stat('t/src')).toBeNull();
    expect((await read(await driver.get('t/dst'))).toString()).toBe('move me');
    await driver.delete('t/dst');
    await driver.delete('t/dst');
    expect(await driver.stat('t/dst')).toBeNull();
  });

  it('lists by prefix', async () => {
    for (const k of ['l/a/1', 'l/a/2', 'l/b/1']) await driver.put(k, Readable.from([Buffer.from(k)]));
    const listed: string[] = [];
    for await (const o of driver.list('l/a/')) listed.push(o.key);
    expect(listed.sort()).toEqual(['l/a/1', 'l/a/2']);
  });

  it('makes download URLs that work, and refuses tampered or expired ones', async () => {
    const data = bundleBytes('presign', 5000);
    await driver.put('p/obj', Readable.from([data]));
    const url = await driver.presignGet('p/obj', 60);
    const ok = await fetch(url);
    expect(ok.status).toBe(200);
    expect(Buffer.from(await ok.arrayBuffer()).equals(data)).toBe(true);

    const ranged = await fetch(url, { headers: { range: 'bytes=100-199' } });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(100, 200))).toBe(true);

    const u = new URL(url);
    const sigParam = kind === 's3' ? 'X-Amz-Signature' : 'signature';
    const sig = u.searchParams.get(sigParam)!;
    u.searchParams.set(sigParam, (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1));
    const tampered = await fetch(u);
    await tampered.arrayBuffer();
    expect(tampered.status).toBe(403);

    const other = new URL(url);
    other.pathname = other.pathname.replace('p/obj', 't/obj');
    const wrongKey = await fetch(other);
    await wrongKey.arrayBuffer();
    expect(wrongKey.status).toBe(403);

    const shortLived = await driver.presignGet('p/obj', 1);
    await sleep(3500);
    const expired = await fetch(shortLived);
    await expired.arrayBuffer();
    expect(expired.status).toBe(403);
  });

  it('signs for the endpoint the downloader uses', async () => {
    await driver.put('p/host', Readable.from([Buffer.from('host')]));
    const base = kind === 's3' ? reg.deps.config.s3!.endpoint : reg.url;
    const viaLocalhost = base.replace('127.0.0.1', 'localhost');
    const url = await driver.presignGet('p/host', 60, viaLocalhost);
    expect(new URL(url).hostname).toBe('localhost');
    const res = await fetch(url);
    expect(await res.text()).toBe('host');
  });

  it('reports the store healthy', async () => {
    await expect(driver.check()).resolves.toBeUndefined();
  });
});
