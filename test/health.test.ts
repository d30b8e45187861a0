/** /healthz names what is down, requests fail fast with 503, and the registry recovers by itself. */
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { createTestDatabase, startTestRegistry, type TestRegistry, bundleBytes } from './support/registry.js';
import { type TcpProxy, startTcpProxy } from './support/tcp-proxy.js';

describe('a dependency goes down and comes back', () => {
  let reg: TestRegistry;
  let pgProxy: TcpProxy;
  let s3Proxy: TcpProxy;
  beforeAll(async () => {
    const dbUrl = new URL(await createTestDatabase());
    pgProxy = await startTcpProxy({ host: dbUrl.hostname, port: Number(dbUrl.port) });
    const s3 = new URL(inject('s3').endpoint);
    s3Proxy = await startTcpProxy({ host: s3.hostname, port: Number(s3.port) });
    dbUrl.port = String(pgProxy.port);
    reg = await startTestRegistry({
      storage: 's3',
      databaseUrl: dbUrl.toString(),
      env: { S3_ENDPOINT: s3Proxy.url(inject('s3').endpoint), SWARM_DB_POOL_SIZE: '2' },
    });
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'hc' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'hc', name: 'app' }));
  });
  afterAll(async () => {
    await reg?.close();
    await pgProxy?.close();
    await s3Proxy?.close();
  });

  const upload = () =>
    reg.fetch('/internal/bundles?workflow=hc/app', {
      method: 'POST',
      body: bundleBytes('hc', 10_000),
      headers: { 'content-type': 'application/gzip' },
    });

  it('storage down: 503 naming storage, uploads refused with 503 and nothing registered', async () => {
    await s3Proxy.cut();
    const health = await reg.fetch('/healthz', { token: null });
    expect(health.status).toBe(503);
    const body = (await health.json()) as { status: string; checks: Record<string, string> };
    expect(body.status).toBe('unavailable: storage');
    expect(body.checks.database).toBe('ok');
    expect(body.checks.storage).toMatch(/^down/);
    const res = await upload();
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('SERVICE_UNAVAILABLE');
    await s3Proxy.restore();
    const c = reg.client();
    expect(await c.call(() => c.trpc.workflows.versions.query({ workflow: 'hc/app' }))).toEqual([]);
    expect((await reg.fetch('/healthz')).status).toBe(200);
    expect((await upload()).status).toBe(201);
  });

  it('database down: 503 naming the database, API calls fail fast with 503, then recover', async () => {
    await pgProxy.cut();
    const health = await reg.fetch('/healthz', { token: null });
    expect(health.status).toBe(503);
    expect(((await health.json()) as { status: string }).status).toBe('unavailable: database');
    const c = reg.client();
    const err = await c.call(() => c.trpc.workflows.get.query({ workflow: 'hc/app' })).catch((e) => e);
    expect(err.code).toBe('SERVICE_UNAVAILABLE');
    expect(err.hint).toMatch(/healthz/);
    await pgProxy.restore();
    expect((await reg.fetch('/healthz')).status).toBe(200);
    expect((await c.call(() => c.trpc.workflows.get.query({ workflow: 'hc/app' }))).activeVersion).toBeNull();
  });
});
