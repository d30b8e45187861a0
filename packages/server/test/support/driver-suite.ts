/**
 * The storage driver suite: what every driver behind StorageDriver must do, run against
 * a driver built directly (no registry, no database). Each test works under a prefix of
 * its own and removes what it stored; after each test the prefix is listed, and anything
 * left there (objects, or unfinished multipart uploads where the store has them) fails it.
 * Modelled on distribution/distribution's registry/storage/driver/testsuites.
 */
import { randomBytes } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ObjectNotFound, type StorageDriver } from '../../src/storage/driver.js';

const read = async (r: Readable) => Buffer.concat(await r.toArray());
const MiB = 1024 * 1024;
/** Larger than one upload part of the S3 driver (8 MiB): stored as a multipart upload. */
const LARGE = 9 * MiB + 17;
const sizes = [
  ['a small body', 3 * MiB + 17],
  ['a body larger than one upload part', LARGE],
] as const;

/** A stream that sends `data` in uneven chunks, as a client would. */
const chunked = (data: Buffer) => Readable.from([data.subarray(0, 1000), data.subarray(1000, 70_000), data.subarray(70_000)]);

/** A stream that sends `bytes` and then fails, like a client going away. */
const failingAfter = (bytes: number) =>
  new Readable({
    read() {
      this.push(randomBytes(bytes));
      this.destroy(new Error('client went away'));
    },
  });

async function keysUnder(driver: StorageDriver, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of driver.list(prefix)) keys.push(o.key);
  return keys.sort();
}

async function expectNotFound(attempt: Promise<unknown>, key: string): Promise<void> {
  await expect(attempt).rejects.toBeInstanceOf(ObjectNotFound);
  await expect(attempt).rejects.toMatchObject({ key });
}

export function driverSuite(name: string, make: () => Promise<StorageDriver>): void {
  describe(`${name} storage driver`, () => {
    const run = `driver-suite-${randomBytes(6).toString('hex')}`;
    let driver: StorageDriver;
    let prefix: string;
    let tests = 0;
    /** A key under this test's own prefix. */
    const at = (key: string) => `${prefix}${key}`;

    beforeAll(async () => {
      driver = await make();
      await driver.init();
    });

    beforeEach(() => {
      prefix = `${run}/${++tests}/`;
    });

    afterEach(async () => {
      const left = await keysUnder(driver, prefix);
      // Removed before failing, so that one failed test does not fail the next run too.
      for (const key of left) await driver.delete(key);
      // Any start time is "before" an hour from now: this aborts (and counts) every unfinished upload.
      const unfinishedUploads = (await driver.abortIncompleteUploads?.(prefix, new Date(Date.now() + 3600_000))) ?? 0;
      expect({ left, unfinishedUploads }, 'the test left these behind').toEqual({ left: [], unfinishedUploads: 0 });
    });

    it('reports the store healthy', async () => {
      await expect(driver.check()).resolves.toBeUndefined();
    });

    it.each(sizes)('stores %s and reads it back, whole and by range', async (_, size) => {
      const data = randomBytes(size);
      await driver.put(at('obj'), chunked(data));
      expect(await driver.stat(at('obj'))).toMatchObject({ key: at('obj'), size: data.length, lastModified: expect.any(Date) });
      expect((await read(await driver.get(at('obj')))).equals(data)).toBe(true);
      expect((await read(await driver.get(at('obj'), { offset: 10, length: 100 }))).equals(data.subarray(10, 110))).toBe(true);
      expect((await read(await driver.get(at('obj'), { offset: 0, length: 1 }))).equals(data.subarray(0, 1))).toBe(true);
      expect((await read(await driver.get(at('obj'), { offset: data.length - 5 }))).equals(data.subarray(-5))).toBe(true);
      await driver.delete(at('obj'));
    });

    it('stores and reads back a zero-byte object', async () => {
      await driver.put(at('empty'), Readable.from([]));
      expect(await driver.stat(at('empty'))).toMatchObject({ key: at('empty'), size: 0 });
      expect((await read(await driver.get(at('empty')))).length).toBe(0);
      const listed = [];
      for await (const o of driver.list(at('empty'))) listed.push(o);
      expect(listed).toMatchObject([{ key: at('empty'), size: 0 }]);
      await driver.delete(at('empty'));
    });

    it.each(sizes)('leaves nothing behind when the source stream fails after %s', async (_, size) => {
      await expect(driver.put(at('failed'), failingAfter(size))).rejects.toThrow('client went away');
      expect(await driver.stat(at('failed'))).toBeNull();
    });

    it('replaces an existing object on put, and keeps it when a put fails', async () => {
      await driver.put(at('obj'), Readable.from([Buffer.from('the old object, longer than the new one')]));
      await driver.put(at('obj'), Readable.from([Buffer.from('new')]));
      expect(await driver.stat(at('obj'))).toMatchObject({ size: 3 });
      expect((await read(await driver.get(at('obj')))).toString()).toBe('new');
      await expect(driver.put(at('obj'), failingAfter(sizes[0][1]))).rejects.toThrow('client went away');
      expect((await read(await driver.get(at('obj')))).toString()).toBe('new');
      await driver.delete(at('obj'));
    });

    it('moves an object and deletes idempotently', async () => {
      await driver.put(at('src'), Readable.from([Buffer.from('move me')]));
      await driver.move(at('src'), at('dst'));
      expect(await driver.stat(at('src'))).toBeNull();
      expect((await read(await driver.get(at('dst')))).toString()).toBe('move me');
      await driver.delete(at('dst'));
      await driver.delete(at('dst'));
      await driver.delete(at('never-stored'));
      expect(await driver.stat(at('dst'))).toBeNull();
    });

    it('moves onto an existing key, replacing its object', async () => {
      await driver.put(at('dst'), Readable.from([Buffer.from('the old object, longer than the new one')]));
      await driver.put(at('src'), Readable.from([Buffer.from('new')]));
      await driver.move(at('src'), at('dst'));
      expect(await driver.stat(at('src'))).toBeNull();
      expect(await driver.stat(at('dst'))).toMatchObject({ size: 3 });
      expect((await read(await driver.get(at('dst')))).toString()).toBe('new');
      await driver.delete(at('dst'));
    });

    it('lists by prefix, at any depth, with sizes', async () => {
      const keys = ['l/a/1', 'l/a/2', 'l/a/deep/er/3', 'l/ab', 'l/b/1'];
      for (const k of keys) await driver.put(at(k), Readable.from([Buffer.from(k)]));
      const listed = [];
      for await (const o of driver.list(at('l/a/'))) listed.push(o);
      listed.sort((x, y) => (x.key < y.key ? -1 : 1));
      expect(listed).toMatchObject(
        ['l/a/1', 'l/a/2', 'l/a/deep/er/3'].map((k) => ({ key: at(k), size: k.length, lastModified: expect.any(Date) })),
      );
      expect(await keysUnder(driver, at('l/a/deep/'))).toEqual([at('l/a/deep/er/3')]);
      // A prefix is a string prefix, not a directory: 'l/a' also takes in 'l/ab'.
      expect(await keysUnder(driver, at('l/a'))).toEqual(['l/a/1', 'l/a/2', 'l/a/deep/er/3', 'l/ab'].map(at));
      expect(await keysUnder(driver, at('l/'))).toEqual(keys.map(at));
      expect(await keysUnder(driver, at('nothing/'))).toEqual([]);
      for (const k of keys) await driver.delete(at(k));
    });

    it('answers ObjectNotFound, naming the key, for every read or move of a missing object', async () => {
      const missing = at('missing');
      expect(await driver.stat(missing)).toBeNull();
      await expectNotFound(driver.get(missing), missing);
      await expectNotFound(driver.get(missing, { offset: 10, length: 100 }), missing);
      await expectNotFound(driver.get(missing, { offset: 10 }), missing);
      await expectNotFound(driver.get(at('missing/deeper')), at('missing/deeper'));
      await expectNotFound(driver.move(missing, at('dst')), missing);
      expect(await driver.stat(at('dst'))).toBeNull();
      await expect(driver.delete(missing)).resolves.toBeUndefined();
    });

    describe('putVerified', () => {
      beforeEach(({ skip }) => {
        if (!driver.putVerified) skip(`the ${name} driver has no putVerified: the store moves a verified temporary object instead`);
      });

      it.each(sizes)('publishes %s only once verify resolves true, after every byte arrived', async (_, size) => {
        const data = randomBytes(size);
        let arrived = 0;
        const counted = new Transform({
          transform(chunk: Buffer, _enc, done) {
            arrived += chunk.length;
            done(null, chunk);
          },
        });
        let seenDuringVerify: unknown = 'verify was not called';
        const stored = await driver.putVerified!(at('obj'), chunked(data).pipe(counted), async () => {
          const readable = await driver.get(at('obj')).then(
            (stream) => (stream.destroy(), true),
            (err: unknown) => !(err instanceof ObjectNotFound),
          );
          seenDuringVerify = { arrived, stat: await driver.stat(at('obj')), readable };
          return true;
        });
        expect(stored).toBe(true);
        expect(seenDuringVerify).toEqual({ arrived: data.length, stat: null, readable: false });
        expect(await driver.stat(at('obj'))).toMatchObject({ size: data.length });
        expect((await read(await driver.get(at('obj')))).equals(data)).toBe(true);
        await driver.delete(at('obj'));
      });

      it('publishes a zero-byte object once verified', async () => {
        expect(await driver.putVerified!(at('empty'), Readable.from([]), async () => true)).toBe(true);
        expect(await driver.stat(at('empty'))).toMatchObject({ size: 0 });
        await driver.delete(at('empty'));
      });

      it.each(sizes)('stores nothing of %s when verify resolves false', async (_, size) => {
        expect(await driver.putVerified!(at('obj'), chunked(randomBytes(size)), async () => false)).toBe(false);
        expect(await driver.stat(at('obj'))).toBeNull();
      });

      it.each(sizes)('stores nothing of %s when verify throws, and passes its error on', async (_, size) => {
        const verify = async (): Promise<boolean> => {
          throw new Error('hash mismatch');
        };
        await expect(driver.putVerified!(at('obj'), chunked(randomBytes(size)), verify)).rejects.toThrow('hash mismatch');
        expect(await driver.stat(at('obj'))).toBeNull();
      });

      it.each(sizes)('stores nothing when the source stream fails after %s, without calling verify', async (_, size) => {
        let verified = false;
        const verify = async () => (verified = true);
        await expect(driver.putVerified!(at('obj'), failingAfter(size), verify)).rejects.toThrow('client went away');
        expect(verified).toBe(false);
        expect(await driver.stat(at('obj'))).toBeNull();
      });

      it('replaces an existing object once verified', async () => {
        await driver.put(at('obj'), Readable.from([Buffer.from('old')]));
        expect(await driver.putVerified!(at('obj'), Readable.from([Buffer.from('replaced')]), async () => true)).toBe(true);
        expect((await read(await driver.get(at('obj')))).toString()).toBe('replaced');
        await driver.delete(at('obj'));
      });
    });

    describe('abortIncompleteUploads', () => {
      beforeEach(({ skip }) => {
        if (!driver.abortIncompleteUploads) skip(`the ${name} driver has no multipart uploads to abort`);
      });

      // The leftover check after each test relies on this count.
      it('aborts the unfinished uploads under a prefix started before a moment, and only those', async () => {
        const hourAgo = new Date(Date.now() - 3600_000);
        const inAnHour = new Date(Date.now() + 3600_000);
        let aborted: unknown = 'verify was not called';
        // An upload held open: putVerified waits for verify before completing it.
        const put = driver.putVerified!(at('u/obj'), chunked(randomBytes(LARGE)), async () => {
          aborted = {
            startedBeforeAnHourAgo: await driver.abortIncompleteUploads!(prefix, hourAgo),
            underAnotherPrefix: await driver.abortIncompleteUploads!(at('other/'), inAnHour),
            startedBeforeInAnHour: await driver.abortIncompleteUploads!(prefix, inAnHour),
          };
          return true;
        });
        await expect(put).rejects.toThrow(); // its upload was aborted under it
        expect(aborted).toEqual({ startedBeforeAnHourAgo: 0, underAnotherPrefix: 0, startedBeforeInAnHour: 1 });
        expect(await driver.stat(at('u/obj'))).toBeNull();
      });
    });

    describe('signed download URLs', () => {
      it('work, whole and by range, and are refused when tampered with or expired', async () => {
        const data = randomBytes(5000);
        await driver.put(at('p/obj'), Readable.from([data]));
        await driver.put(at('p/other'), Readable.from([Buffer.from('another object')]));
        const url = await driver.presignGet(at('p/obj'), 60);
        const ok = await fetch(url);
        expect(ok.status).toBe(200);
        expect(Buffer.from(await ok.arrayBuffer()).equals(data)).toBe(true);

        const ranged = await fetch(url, { headers: { range: 'bytes=100-199' } });
        expect(ranged.status).toBe(206);
        expect(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(100, 200))).toBe(true);

        // Whatever the driver calls its signature parameter (X-Amz-Signature, signature).
        const tampered = new URL(url);
        const sigParam = [...tampered.searchParams.keys()].find((k) => /signature/i.test(k))!;
        const sig = tampered.searchParams.get(sigParam)!;
        tampered.searchParams.set(sigParam, (sig[0] === 'a' ? 'b' : 'a') + sig.slice(1));
        expect(await statusOf(tampered)).toBe(403);

        const otherKey = new URL(url);
        otherKey.pathname = otherKey.pathname.replace('p/obj', 'p/other');
        expect(await statusOf(otherKey)).toBe(403);

        // Signed two minutes ago for one minute: expired a minute ago.
        const expired = await driver.presignGet(at('p/obj'), 60, undefined, new Date(Date.now() - 120_000));
        expect(await statusOf(expired)).toBe(403);

        const shortLived = await driver.presignGet(at('p/obj'), 1);
        await new Promise((r) => setTimeout(r, 3500));
        expect(await statusOf(shortLived)).toBe(403);

        await driver.delete(at('p/obj'));
        await driver.delete(at('p/other'));
      });

      it('signs for the endpoint the downloader uses', async () => {
        await driver.put(at('p/host'), Readable.from([Buffer.from('host')]));
        const viaLocalhost = new URL(await driver.presignGet(at('p/host'), 60)).origin.replace('127.0.0.1', 'localhost');
        const url = await driver.presignGet(at('p/host'), 60, viaLocalhost);
        expect(new URL(url).hostname).toBe('localhost');
        const res = await fetch(url);
        expect(await res.text()).toBe('host');
        await driver.delete(at('p/host'));
      });

      it('answers 404 through a URL signed for a missing object', async () => {
        expect(await statusOf(await driver.presignGet(at('missing'), 60))).toBe(404);
      });
    });
  });
}

async function statusOf(url: string | URL): Promise<number> {
  const res = await fetch(url);
  await res.arrayBuffer();
  return res.status;
}
