/**
 * POST /internal/bundles and the REST read routes, against both stores: the happy path
 * end to end, then every bad upload, each asserting the error and that nothing changed.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobKey } from '../packages/server/src/storage/bundle-store.js';
import { type StorageKind, type TestRegistry, bundleBytes, sha256, startTestRegistry } from './support/registry.js';

const MAX = 256 * 1024;

describe.each<StorageKind>(['fs', 's3'])('uploads to the %s store', (kind) => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: kind, env: { SWARM_MAX_BUNDLE_BYTES: String(MAX) } });
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    for (const name of ['app', 'other', 'bad']) await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
  });
  afterAll(() => reg?.close());

  const post = (query: string, body?: Buffer | string, headers: Record<string, string> = {}) =>
    reg.fetch(`/internal/bundles?${query}`, { method: 'POST', body, headers: { 'content-type': 'application/gzip', ...headers } });

  async function storeKeys(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const o of reg.deps.store.driver.list(prefix)) keys.push(o.key);
    return keys.sort();
  }
  const versionsOf = async (workflow: string) => {
    const c = reg.client();
    return c.call(() => c.trpc.workflows.versions.query({ workflow }));
  };
  /** The state an upload must not change: versions of acme/bad and everything in the store. */
  async function snapshot() {
    return { versions: await versionsOf('acme/bad'), blobs: await storeKeys('blobs/'), uploads: await storeKeys('uploads/') };
  }

  it('stores, registers, activates and resolves to a URL whose bytes hash right', async () => {
    const body = bundleBytes(`${kind}-one`, 100_000);
    const res = await post('workflow=acme/app&activate=true&message=first', body, { 'x-bundle-sha256': sha256(body) });
    expect(res.status).toBe(201);
    const up = await res.json();
    expect(up).toMatchObject({ version: 1, bundleHash: sha256(body), size: body.length, created: true, active: true });

    const active = await (await reg.fetch(`/internal/workflow/${up.workflowId}/active`)).json();
    expect(active).toMatchObject({
      workflowId: up.workflowId,
      versionId: up.versionId,
      version: 1,
      bundleHash: up.bundleHash,
      size: body.length,
    });
    const bytes = Buffer.from(await (await fetch(active.bundleUrl)).arrayBuffer());
    expect(sha256(bytes)).toBe(active.bundleHash);

    const byName = await reg.fetch(`/internal/workflow/${encodeURIComponent('acme/app')}/active`);
    expect((await byName.json()).versionId).toBe(up.versionId);

    const bundle = await (await reg.fetch(`/internal/bundles/${up.bundleHash}`)).json();
    expect(bundle).toMatchObject({ hash: up.bundleHash, size: body.length });
    expect(sha256(Buffer.from(await (await fetch(bundle.url)).arrayBuffer()))).toBe(up.bundleHash);
    expect(Date.parse(bundle.expiresAt)).toBeGreaterThan(Date.now());
  });

  it('answers a retry of the same bytes with the same version (200, created: false)', async () => {
    const body = bundleBytes(`${kind}-one`, 100_000);
    const res = await post('workflow=acme/app', body);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ version: 1, created: false, active: true });
    expect(await versionsOf('acme/app')).toHaveLength(1);
  });

  it('stores bytes once however many workflows use them', async () => {
    const body = bundleBytes(`${kind}-one`, 100_000);
    const before = await storeKeys('blobs/');
    const res = await post('workflow=acme/other', body);
    expect(res.status).toBe(201);
    expect(await storeKeys('blobs/')).toEqual(before);
    expect(await storeKeys('uploads/')).toEqual([]);
  });

  it('accepts chunked bodies without a Content-Length and application/octet-stream', async () => {
    const body = bundleBytes(`${kind}-chunked`, 50_000);
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(body.subarray(0, 20_000));
        c.enqueue(body.subarray(20_000));
        c.close();
      },
    });
    const res = await reg.fetch('/internal/bundles?workflow=acme/app', {
      method: 'POST',
      body: stream,
      headers: { 'content-type': 'application/octet-stream' },
      duplex: 'half',
    });
    expect(res.status).toBe(201);
    expect((await res.json()).bundleHash).toBe(sha256(body));
  });

  it('uploads through the SDK, skipping bytes the store already has', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-sdk-'));
    const file = path.join(dir, 'b.tar.gz');
    await fs.writeFile(file, bundleBytes(`${kind}-sdk`, 70_000));
    const phases = new Set<string>();
    const first = await reg.client().uploadBundle(file, { workflow: 'acme/app', activate: true, onProgress: (p) => phases.add(p.phase) });
    expect(first).toMatchObject({ uploaded: true, created: true, active: true });
    expect([...phases].sort()).toEqual(['hash', 'upload']);
    const again = await reg.client().uploadBundle(file, { workflow: 'acme/other' });
    expect(again).toMatchObject({ uploaded: false, created: true, bundleHash: first.bundleHash });
    await fs.rm(dir, { recursive: true });
  });

  describe('bad uploads are refused and change nothing', () => {
    it('declared hash does not match the body: 422, no object at either address', async () => {
      const before = await snapshot();
      const body = bundleBytes(`${kind}-mismatch`, 30_000);
      const res = await post('workflow=acme/bad', body, { 'x-bundle-sha256': 'a'.repeat(64) });
      expect(res.status).toBe(422);
      expect((await res.json()).error.message).toMatch(/declared/);
      expect(await reg.deps.store.driver.stat(blobKey(sha256(body)))).toBeNull();
      expect(await reg.deps.store.driver.stat(blobKey('a'.repeat(64)))).toBeNull();
      expect(await snapshot()).toEqual(before);
    });

    it('declared hash of stored bytes but a different body: 422', async () => {
      const before = await snapshot();
      const stored = sha256(bundleBytes(`${kind}-one`, 100_000));
      const res = await post('workflow=acme/bad', bundleBytes('imposter', 100_000), { 'x-bundle-sha256': stored });
      expect(res.status).toBe(422);
      expect(await snapshot()).toEqual(before);
    });

    it('malformed X-Bundle-Sha256 header: 400', async () => {
      const before = await snapshot();
      const res = await post('workflow=acme/bad', bundleBytes('x', 100), { 'x-bundle-sha256': 'ABC' });
      expect(res.status).toBe(400);
      expect((await res.json()).error.message).toMatch(/X-Bundle-Sha256/);
      expect(await snapshot()).toEqual(before);
    });

    it('declared size over the cap: 413 before any byte is read', async () => {
      const before = await snapshot();
      const res = await post('workflow=acme/bad', bundleBytes('big', MAX + 1));
      expect(res.status).toBe(413);
      const body = await res.json();
      expect(body.error.code).toBe('PAYLOAD_TOO_LARGE');
      expect(body.error.hint).toMatch(/SWARM_MAX_BUNDLE_BYTES/);
      expect(await snapshot()).toEqual(before);
    });

    it('chunked body that grows over the cap: 413, cut off in the stream', async () => {
      const before = await snapshot();
      const chunk = bundleBytes('chunk', 64 * 1024);
      let sent = 0;
      const stream = new ReadableStream({
        pull(c) {
          if (sent > MAX * 2) return c.close();
          sent += chunk.length;
          c.enqueue(chunk);
        },
      });
      const res = await reg
        .fetch('/internal/bundles?workflow=acme/bad', {
          method: 'POST',
          body: stream,
          headers: { 'content-type': 'application/gzip' },
          duplex: 'half',
        })
        .catch((err: Error) => err);
      // The server may answer 413 and close before the client finishes sending.
      if (res instanceof Response) expect(res.status).toBe(413);
      await waitFor(async () => (await storeKeys('uploads/')).length === 0);
      expect(await snapshot()).toEqual(before);
    });

    it('truncated body (client disconnects mid-upload): nothing registered, temporary object removed', async () => {
      const before = await snapshot();
      const { port } = new URL(reg.url);
      const socket = net.connect(Number(port), '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      socket.write(
        `POST /internal/bundles?workflow=acme/bad HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${reg.adminToken}\r\n` +
          `Content-Type: application/gzip\r\nContent-Length: 100000\r\n\r\n`,
      );
      socket.write(bundleBytes('truncated', 40_000));
      await new Promise((r) => setTimeout(r, 300));
      socket.destroy();
      await waitFor(async () => (await storeKeys('uploads/')).length === 0);
      expect(await snapshot()).toEqual(before);
    });

    it('empty body: 400', async () => {
      const before = await snapshot();
      const res = await post('workflow=acme/bad', Buffer.alloc(0));
      expect(res.status).toBe(400);
      expect((await res.json()).error.message).toMatch(/empty/);
      expect(await snapshot()).toEqual(before);
    });

    for (const type of ['application/json', 'text/plain', 'multipart/form-data; boundary=x']) {
      it(`wrong content type ${type}: 415 with a hint`, async () => {
        const before = await snapshot();
        const res = await post('workflow=acme/bad', '{"not":"a bundle"}', { 'content-type': type });
        expect(res.status).toBe(415);
        expect((await res.json()).error.hint).toMatch(/application\/gzip/);
        expect(await snapshot()).toEqual(before);
      });
    }

    it('unknown workflow: 404', async () => {
      const before = await snapshot();
      const res = await post('workflow=acme/nope', bundleBytes('x', 100));
      expect(res.status).toBe(404);
      expect(await snapshot()).toEqual(before);
    });

    for (const [name, query] of [
      ['missing workflow', 'activate=true'],
      ['malformed workflow', 'workflow=..%2F..%2Fetc'],
      ['SQL in workflow', "workflow=acme/x'%20or%20'1'='1"],
      ['bad activate flag', 'workflow=acme/bad&activate=yes'],
    ]) {
      it(`${name}: 400`, async () => {
        const before = await snapshot();
        const res = await post(query!, bundleBytes('x', 100));
        expect(res.status).toBe(400);
        expect((await res.json()).error.code).toBe('BAD_REQUEST');
        expect(await snapshot()).toEqual(before);
      });
    }

    it("another tenant's token: 404, as if the workflow did not exist", async () => {
      const admin = reg.client();
      await admin.call(() => admin.trpc.tenants.create.mutate({ slug: 'rival' }));
      const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'tenant:rival' }));
      const before = await snapshot();
      const res = await reg.fetch('/internal/bundles?workflow=acme/bad', {
        method: 'POST',
        token,
        body: bundleBytes('x', 100),
        headers: { 'content-type': 'application/gzip' },
      });
      expect(res.status).toBe(404);
      expect(await snapshot()).toEqual(before);
    });
  });

  describe('read routes', () => {
    it('GET /internal/bundles/:hash: 404 unknown, 400 malformed', async () => {
      expect((await reg.fetch(`/internal/bundles/${'e'.repeat(64)}`)).status).toBe(404);
      const bad = await reg.fetch('/internal/bundles/not-a-hash');
      expect(bad.status).toBe(400);
      expect((await bad.json()).error.message).toMatch(/sha256/);
    });

    it('GET /internal/workflow/:id/active: 404 without an active version or workflow, 400 malformed', async () => {
      const none = await reg.fetch(`/internal/workflow/${encodeURIComponent('acme/bad')}/active`);
      expect(none.status).toBe(404);
      expect((await none.json()).error.hint).toMatch(/swarm activate/);
      expect((await reg.fetch('/internal/workflow/00000000-0000-4000-8000-000000000000/active')).status).toBe(404);
      expect((await reg.fetch('/internal/workflow/nonsense/active')).status).toBe(400);
    });

    it('GET /healthz needs no token and checks both dependencies', async () => {
      const res = await reg.fetch('/healthz', { token: null });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok', checks: { database: 'ok', storage: 'ok' } });
    });

    it('GET /metrics counts requests and uploads in Prometheus text', async () => {
      const res = await reg.fetch('/metrics');
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toMatch(/swarm_bundle_uploads_total\{result="created"\} [1-9]/);
      expect(text).toMatch(/swarm_bundle_uploads_total\{result="UNPROCESSABLE_CONTENT"\} [1-9]/);
      expect(text).toMatch(/swarm_http_requests_total\{method="POST",route="\/internal\/bundles",status="201"\} [1-9]/);
      expect(text).toMatch(/swarm_http_request_duration_seconds_bucket/);
    });
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('uploads with a declared hash go straight to their address on S3, published only once verified', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 's3', env: { SWARM_MAX_BUNDLE_BYTES: String(32 * 1024 * 1024) } });
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'app' }));
  });
  afterAll(() => reg?.close());

  const post = (body: Buffer, hash: string) =>
    reg.fetch('/internal/bundles?workflow=acme/app', {
      method: 'POST',
      headers: { 'content-type': 'application/gzip', 'x-bundle-sha256': hash },
      body,
    });
  // Whatever an upload left behind (temporary object, unfinished multipart upload) is what the sweep removes.
  const leftovers = () => reg.deps.store.sweepUploads(0);

  it('a body of several 8 MiB parts whose hash was declared wrongly: 422, nothing at the declared address, no unfinished upload left', async () => {
    const body = bundleBytes('several-parts-mismatch', 9 * 1024 * 1024);
    const declared = 'b'.repeat(64);
    const res = await post(body, declared);
    expect(res.status).toBe(422);
    expect(await reg.deps.store.driver.stat(blobKey(declared))).toBeNull();
    expect(await reg.deps.store.driver.stat(blobKey(sha256(body)))).toBeNull();
    expect(await leftovers()).toEqual({ objects: 0, multipart: 0, kept: 0 });
  });

  it('a body of several parts with the right hash: stored once, at its address, with no temporary object', async () => {
    const body = bundleBytes('several-parts', 17 * 1024 * 1024);
    const res = await post(body, sha256(body));
    expect(res.status).toBe(201);
    expect(await reg.deps.store.driver.stat(blobKey(sha256(body)))).toMatchObject({ size: body.length });
    expect(await leftovers()).toEqual({ objects: 0, multipart: 0, kept: 0 });
    const again = await post(body, sha256(body));
    expect(again.status).toBe(200);
  });
});
