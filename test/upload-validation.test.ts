/**
 * Issue #12 §2 and §4: the registry refuses at upload what the boot agent would refuse at
 * boot (the agent's own hostile archives, from its test fixtures), answers 422 naming the
 * entry and the rule, and keeps nothing (no version, no object under blobs/ or uploads/,
 * no unfinished multipart upload). Every query parameter is checked before a byte is
 * stored. And an upload of a bundle another tenant stored takes exactly the store path of
 * one nobody stored: the same driver calls and the same metrics, counted, not timed.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Blob,
  type TarEntry,
  blob,
  bundle,
  gzip,
  gzipBombFile,
  manifest,
  manyEntriesBundle,
  noise,
  tarBytes,
} from '../packages/boot-agent/test/support/archives.js';
import { failure } from './support/failure.js';
import { type StorageKind, type TestRegistry, bundleBytes, sha256, startTestRegistry } from './support/registry.js';

/** Each kind of archive the boot agent refuses (packages/boot-agent/test/hostile.test.ts), with the reason it gives. */
const hostile: Array<[name: string, make: () => Blob | Promise<Blob>, reason: string | RegExp]> = [
  [
    'an entry climbing out with "../"',
    () => bundle([manifest(), { path: '../../escaped', body: 'x' }]),
    'entry "../../escaped" climbs out with ".."',
  ],
  ['an absolute path', () => bundle([manifest(), { path: '/etc/cron.d/pwn', body: 'x' }]), 'entry "/etc/cron.d/pwn" has an absolute path'],
  [
    'a symlink',
    () => bundle([manifest(), { path: 'link', type: 'SymbolicLink', linkpath: 'swarm.json' }]),
    'entry "link" is a SymbolicLink; bundles may hold only regular files and directories',
  ],
  [
    'a symlink followed by a file written through it',
    () => bundle([manifest(), { path: 'escape', type: 'SymbolicLink', linkpath: '/tmp' }, { path: 'escape/pwned.txt', body: 'pwned' }]),
    'entry "escape" is a SymbolicLink',
  ],
  [
    'a hard link to /etc/passwd',
    () => bundle([manifest(), { path: 'passwd', type: 'Link', linkpath: '/etc/passwd' }]),
    'entry "passwd" is a Link',
  ],
  [
    'a character device',
    () => bundle([manifest(), { path: 'dev/mem', type: 'CharacterDevice', devmaj: 1, devmin: 1, mode: 0o666 }]),
    'entry "dev/mem" is a CharacterDevice',
  ],
  ['a FIFO', () => bundle([manifest(), { path: 'queue', type: 'FIFO' }]), 'entry "queue" is a FIFO'],
  [
    '2,000-deep nesting',
    () => {
      const entries: TarEntry[] = [manifest()];
      for (let depth = 1; depth <= 2000; depth++) entries.push({ path: 'd/'.repeat(depth), type: 'Directory' });
      return bundle(entries);
    },
    /entry "(d\/){64}d.*" is nested deeper than 64 levels/,
  ],
  [
    'a duplicate entry',
    () => bundle([manifest(), { path: 'a.txt', body: 'one' }, { path: 'a.txt', body: 'two' }]),
    'entry "a.txt" appears twice',
  ],
  [
    'a duplicate large entry',
    () =>
      bundle([
        manifest(),
        { path: 'data/model.bin', body: noise(2 * 1024 * 1024) },
        { path: './data/model.bin', body: noise(2 * 1024 * 1024) },
      ]),
    'entry "./data/model.bin" appears twice',
  ],
  ['a plain tar (not gzip)', () => blob(tarBytes([manifest()])), 'the bundle is not gzip-compressed'],
  [
    'a gzip of something that is not a tar',
    () => blob(gzip(Buffer.from('this is a README, not a tar archive\n'.repeat(2000)))),
    'not a valid bundle: TAR_ENTRY_INVALID: checksum failure',
  ],
  ["a tar gzip'd twice", () => blob(gzip(gzip(tarBytes([manifest()])))), 'the archive inside the gzip is compressed again'],
  [
    'a gzip cut off inside the tar',
    () => {
      const whole = bundle([manifest(), { path: 'data/noise.bin', body: noise(256 * 1024) }]).bytes;
      return blob(whole.subarray(0, whole.length >> 1));
    },
    'not a valid bundle: zlib: unexpected end of file',
  ],
  ['an archive with no entries', () => blob(gzip(tarBytes([]))), 'not a valid bundle: TAR_BAD_ARCHIVE: Unrecognized archive format'],
  ['more than 100,000 entries', () => manyEntriesBundle(100_001), 'more than 100000 entries'],
  [
    'a gzip bomb (1 GiB of zeros in ~1 MiB)',
    async () => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-bomb-'));
      const bomb = await gzipBombFile(path.join(dir, 'bomb.tar.gz'));
      await fs.rm(dir, { recursive: true });
      return bomb;
    },
    /max decompression ratio exceeded/,
  ],
];

const validBundle = () => bundle([manifest(), { path: 'lib/', type: 'Directory' }, { path: 'lib/run.sh', body: 'echo hi\n', mode: 0o755 }]);

describe.each<StorageKind>(['fs', 's3'])('uploads are checked against the bundle rules (%s store)', (kind) => {
  let reg: TestRegistry;
  let rivalToken: string;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: kind, env: { SWARM_MAX_BUNDLE_BYTES: String(64 * 1024 * 1024), LOG_LEVEL: 'warn' } });
    const c = reg.client();
    for (const slug of ['acme', 'rival']) await c.call(() => c.trpc.tenants.create.mutate({ slug }));
    for (const name of ['app', 'bad']) await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'rival', name: 'probe' }));
    rivalToken = (await c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:rival' }))).token;
  });
  afterAll(() => reg?.close());

  const post = (query: string, body: Buffer | string, headers: Record<string, string> = {}, token?: string) =>
    reg.fetch(`/internal/bundles?${query}`, { method: 'POST', body, token, headers: { 'content-type': 'application/gzip', ...headers } });

  async function storeKeys(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const o of reg.deps.store.driver.list(prefix)) keys.push(o.key);
    return keys.sort();
  }
  /** What a refused upload must leave as it was: acme/bad's versions and everything in the store. */
  async function snapshot() {
    const c = reg.client();
    const versions = await c.call(() => c.trpc.workflows.versions.query({ workflow: 'acme/bad' }));
    return { versions, blobs: await storeKeys('blobs/'), uploads: await storeKeys('uploads/') };
  }
  /** Nothing half-written anywhere: the sweep of crashed uploads finds nothing (also no unfinished multipart upload). */
  const expectNoLeftovers = async () => expect(await reg.deps.store.sweepUploads(0)).toEqual({ objects: 0, multipart: 0, kept: 0 });

  it("`--data-binary 'garbage v2'` with activate=true: 422, no version, no object", async () => {
    const before = await snapshot();
    const res = await post('workflow=acme/bad&activate=true', 'garbage v2');
    expect(res.status).toBe(422);
    expect((await res.json()).error).toMatchObject({
      code: 'UNPROCESSABLE_CONTENT',
      message: expect.stringMatching(/not gzip-compressed/),
    });
    expect(await snapshot()).toEqual(before);
    expect(before.versions).toEqual([]);
    await expectNoLeftovers();
  });

  for (const [name, make, reason] of hostile) {
    it(`${name}: 422 naming it, nothing registered or stored`, async () => {
      const b = await make();
      const before = await snapshot();
      const res = await post('workflow=acme/bad&activate=true', b.bytes, { 'x-bundle-sha256': b.hash });
      expect(res.status).toBe(422);
      const { error } = await res.json();
      expect(error.code).toBe('UNPROCESSABLE_CONTENT');
      expect(error.message).toMatch(typeof reason === 'string' ? new RegExp(reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : reason);
      expect(await snapshot()).toEqual(before);
      await expectNoLeftovers();
    });
  }

  it('a valid bundle (a manifest and files) still uploads and activates', async () => {
    const b = validBundle();
    const res = await post('workflow=acme/app&activate=true', b.bytes, { 'x-bundle-sha256': b.hash });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ bundleHash: b.hash, active: true });
  });

  describe('every query parameter is checked before a byte is stored', () => {
    for (const [name, query] of [
      ['a NUL in the message (message=%00nul)', 'workflow=acme/bad&activate=true&message=%00nul'],
      ['a message over 1,000 characters', `workflow=acme/bad&message=${'m'.repeat(1001)}`],
      ['an unknown parameter', 'workflow=acme/bad&activ=true'],
      ['the message given twice', 'workflow=acme/bad&message=a&message=b'],
    ]) {
      it(`${name}: 400, nothing in the store`, async () => {
        const before = await snapshot();
        const body = bundleBytes(`query-${name}`, 4096);
        const res = await post(query!, body, { 'x-bundle-sha256': sha256(body) });
        expect(res.status).toBe(400);
        expect((await res.json()).error.code).toBe('BAD_REQUEST');
        expect(await snapshot()).toEqual(before);
        expect(await reg.deps.store.stat(sha256(body))).toBeNull();
        await expectNoLeftovers();
      });
    }

    it('versions.register with a NUL in the message: BAD_REQUEST', async () => {
      const c = reg.client();
      const { hash } = validBundle();
      expect((await post('workflow=acme/app', validBundle().bytes)).status).toBeLessThan(300);
      const err = await failure(
        c.call(() => c.trpc.versions.register.mutate({ workflow: 'acme/bad', bundleHash: hash, message: '\0nul' })),
      );
      expect(err.code).toBe('BAD_REQUEST');
      expect((await snapshot()).versions).toEqual([]);
    });
  });

  describe('a bundle another tenant stored takes the same path as one nobody stored (no existence oracle)', () => {
    type Call = string;
    /** The store driver's calls during `run` (the real driver, wrapped to count), and how far the stored-bytes metric moved. */
    async function traced(run: () => Promise<void>): Promise<{ calls: Call[]; storedBytes: number }> {
      const driver = reg.deps.store.driver as unknown as Record<string, unknown>;
      const calls: Call[] = [];
      const originals = new Map<string, unknown>();
      for (const name of ['put', 'putVerified', 'move', 'delete', 'stat', 'get', 'list']) {
        const original = driver[name];
        if (typeof original !== 'function') continue;
        originals.set(name, original);
        driver[name] = (...args: unknown[]) => {
          calls.push(name);
          return (original as (...a: unknown[]) => unknown).apply(reg.deps.store.driver, args);
        };
      }
      const metricBefore = await storedBytes();
      try {
        await run();
      } finally {
        for (const [name, original] of originals) driver[name] = original;
      }
      return { calls, storedBytes: (await storedBytes()) - metricBefore };
    }
    async function storedBytes(): Promise<number> {
      const text = await (await reg.fetch('/metrics')).text();
      return Number(/^swarm_bundle_stored_bytes_total (\d+)/m.exec(text)?.[1] ?? 0);
    }

    it('the wrong bytes declared under a hash acme stored vs under one nobody stored: the same driver calls, 422 both', async () => {
      const secret = bundleBytes('acme-secret', 64 * 1024);
      expect((await post('workflow=acme/app', secret, { 'x-bundle-sha256': sha256(secret) })).status).toBe(201);
      const guess = bundleBytes('rival-guess', 64 * 1024);
      const unknown = sha256(bundleBytes('nobody', 64 * 1024));

      const probe = (declared: string) =>
        traced(async () => {
          const res = await post('workflow=rival/probe', guess, { 'x-bundle-sha256': declared }, rivalToken);
          expect(res.status).toBe(422);
        });
      const storedElsewhere = await probe(sha256(secret));
      const storedNowhere = await probe(unknown);
      expect(storedElsewhere.calls).toEqual(storedNowhere.calls);
      expect(storedElsewhere.calls.filter((c) => c === 'put' || c === 'putVerified')).toHaveLength(1);
      expect(storedElsewhere.storedBytes).toBe(storedNowhere.storedBytes);
    });

    it('the right bytes of a bundle acme stored vs of one nobody stored: the same driver calls, and the metric moves by the size both times', async () => {
      const shared = bundleBytes('acme-shared', 64 * 1024);
      expect((await post('workflow=acme/app', shared, { 'x-bundle-sha256': sha256(shared) })).status).toBe(201);
      const fresh = bundleBytes('rival-fresh', 64 * 1024);

      const upload = (body: Buffer) =>
        traced(async () => {
          const res = await post('workflow=rival/probe', body, { 'x-bundle-sha256': sha256(body) }, rivalToken);
          expect(res.status).toBe(201);
        });
      const storedElsewhere = await upload(shared);
      const storedNowhere = await upload(fresh);
      expect(storedElsewhere.calls).toEqual(storedNowhere.calls);
      expect(storedElsewhere.calls.filter((c) => c === 'put' || c === 'putVerified')).toHaveLength(1);
      expect(storedElsewhere.storedBytes).toBe(shared.length);
      expect(storedNowhere.storedBytes).toBe(fresh.length);
      expect(await reg.deps.store.stat(sha256(shared))).toMatchObject({ size: shared.length });
    });
  });
});
