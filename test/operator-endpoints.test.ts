/**
 * What /metrics and /healthz tell whom (#12 §2): metrics describe every tenant's traffic
 * (a tenant could watch the stored-bytes counter move by another tenant's upload), so they
 * need an admin or orchestrator token; /healthz answers anyone, but why a dependency is
 * down (error text with paths and addresses) only to operators and the log.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

describe('/metrics and /healthz', () => {
  let reg: TestRegistry;
  let tenant: string;
  let orchestrator: string;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn' } });
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'ops' }));
    tenant = (await c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:ops' }))).token;
    orchestrator = (await c.call(() => c.trpc.tokens.create.mutate({ scope: 'orchestrator' }))).token;
  });
  afterAll(() => reg?.close());

  /** Runs `fn` while the fs store's directory is gone (its check fails with ENOENT and the path). */
  async function withStoreGone<T>(fn: () => Promise<T>): Promise<T> {
    const store = path.join(reg.dataDir, 'store');
    await fs.rename(store, `${store}.away`);
    try {
      return await fn();
    } finally {
      await fs.rename(`${store}.away`, store);
    }
  }

  it('GET /metrics without a token: 401', async () => {
    expect((await reg.fetch('/metrics', { token: null })).status).toBe(401);
  });

  it("GET /metrics with a tenant token: 403, so a tenant cannot watch the stored-bytes counter move by another tenant's upload", async () => {
    const res = await reg.fetch('/metrics', { token: tenant });
    expect(res.status).toBe(403);
    const body = await res.json();
    expect(body.error.code).toBe('FORBIDDEN');
    expect(JSON.stringify(body)).not.toMatch(/swarm_bundle/);
  });

  it('GET /metrics with an orchestrator or admin token: 200, Prometheus text', async () => {
    for (const token of [orchestrator, reg.adminToken]) {
      const res = await reg.fetch('/metrics', { token });
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/swarm_bundle_stored_bytes_total/);
    }
  });

  it('GET /healthz without a token, storage down: only "down", no error text, no path; the reason is logged', async () => {
    const res = await withStoreGone(() => reg.fetch('/healthz', { token: null }));
    expect(res.status).toBe(503);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ status: 'unavailable: storage', checks: { database: 'ok', storage: 'down' } });
    expect(text).not.toContain(reg.dataDir);
    expect(text).not.toMatch(/ENOENT/);
    expect(reg.logs.some((line) => line.includes('health check') && line.includes('ENOENT'))).toBe(true);
  });

  it('GET /healthz with a tenant token or an invalid one: only "down" too (a health check never answers 401)', async () => {
    for (const token of [tenant, 'swt_not-a-token']) {
      const res = await withStoreGone(() => reg.fetch('/healthz', { token }));
      expect(res.status).toBe(503);
      expect((await res.json()).checks).toEqual({ database: 'ok', storage: 'down' });
    }
  });

  it('GET /healthz with an orchestrator or admin token, storage down: the reason', async () => {
    for (const token of [orchestrator, reg.adminToken]) {
      const res = await withStoreGone(() => reg.fetch('/healthz', { token }));
      expect(res.status).toBe(503);
      const body = await res.json();
      expect(body.checks.database).toBe('ok');
      expect(body.checks.storage).toMatch(/^down: .*ENOENT/);
    }
  });

  it('GET /healthz when all is well: the same answer for everyone', async () => {
    for (const token of [null, tenant, orchestrator]) {
      const res = await reg.fetch('/healthz', { token });
      expect(await res.json()).toEqual({ status: 'ok', checks: { database: 'ok', storage: 'ok' } });
    }
  });
});
