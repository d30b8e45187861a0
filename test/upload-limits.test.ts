/**
 * Uploads cannot exhaust the registry (#12 §3): the attack held thousands of uploads open,
 * each declaring a large body and sending a byte now and then, until the registry ran out
 * of file descriptors and health checks and resolves were dropped. Here a bounded number of
 * such trickling uploads (each bounded in time) meets the caps per token and in total (429
 * with Retry-After) while /healthz and resolves keep answering, and the minimum transfer
 * rate cuts a trickler (408) without storing anything. No timing is asserted.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestRegistry, bundleBytes, sha256, startTestRegistry } from './support/registry.js';
import { type Answer, trickle } from './support/trickle.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An upload that is refused at once when admitted (its bytes do not hash to the declared sha256), else 429. */
async function probeUpload(
  reg: TestRegistry,
  token: string,
  workflow: string,
): Promise<{ status: number; retryAfter: string | null; body: any }> {
  const res = await reg.fetch(`/internal/bundles?workflow=${workflow}`, {
    method: 'POST',
    token,
    headers: { 'content-type': 'application/gzip', 'x-bundle-sha256': 'f'.repeat(64) },
    body: bundleBytes('probe', 512),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() };
}

/** The registry's own count of uploads in progress (its metrics gauge). */
async function uploadsInProgress(reg: TestRegistry): Promise<number> {
  const text = await (await reg.fetch('/metrics')).text();
  return Number(/^swarm_bundle_uploads_in_progress (\d+)$/m.exec(text)?.[1]);
}

/** Calls `fn` until `done(value)`, at most `tries` times 50 ms apart. */
async function eventually<T>(fn: () => Promise<T>, done: (v: T) => boolean, tries = 100): Promise<T> {
  let value = await fn();
  for (let i = 0; !done(value) && i < tries; i++) {
    await sleep(50);
    value = await fn();
  }
  return value;
}

async function tenantWithWorkflow(reg: TestRegistry, slug: string): Promise<string> {
  const c = reg.client();
  await c.call(() => c.trpc.tenants.create.mutate({ slug }));
  await c.call(() => c.trpc.workflows.create.mutate({ tenant: slug, name: 'app' }));
  return (await c.call(() => c.trpc.tokens.create.mutate({ scope: `tenant:${slug}` }))).token;
}

/** Files under the fs store (blobs and temporary uploads): what an upload would leave behind. */
async function storedFiles(reg: TestRegistry): Promise<string[]> {
  const entries = await fs.readdir(path.join(reg.dataDir, 'store'), { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

describe('concurrent uploads are capped per token and in total', () => {
  let reg: TestRegistry;
  let acme: string;
  let beta: string;
  const tricklers: Array<ReturnType<typeof trickle>> = [];
  beforeAll(async () => {
    reg = await startTestRegistry({
      storage: 'fs',
      // No minimum rate here: the tricklers must hold their slots for the whole test.
      env: { LOG_LEVEL: 'warn', SWARM_MAX_UPLOADS_PER_TOKEN: '2', SWARM_MAX_UPLOADS: '3', SWARM_UPLOAD_MIN_BYTES_PER_SECOND: '0' },
    });
    acme = await tenantWithWorkflow(reg, 'acme');
    beta = await tenantWithWorkflow(reg, 'beta');
    const v1 = await reg.fetch('/internal/bundles?workflow=acme/app&activate=true', {
      method: 'POST',
      token: acme,
      headers: { 'content-type': 'application/gzip' },
      body: bundleBytes('acme-v1', 4096),
    });
    expect(v1.status).toBe(201);
  });
  afterAll(async () => {
    for (const t of tricklers) t.stop();
    await reg?.close();
  });

  it('12 trickling uploads from one token: 2 hold slots, the rest answer 429 with Retry-After; health and resolves answer throughout', async () => {
    const mine = Array.from({ length: 12 }, () => trickle(reg, acme, 'acme/app', { everyMs: 200, maxMs: 20_000 }));
    tricklers.push(...mine);
    // Ten are refused at once; two keep trickling (no answer within the 3 s waited for).
    const answers = await Promise.all(mine.map((t) => Promise.race([t.answer, sleep(3_000).then(() => null)])));
    const answered = answers.filter((a): a is Answer => a !== null);
    expect(answered).toHaveLength(10);
    expect(await uploadsInProgress(reg)).toBe(2);
    for (const a of answered) {
      expect(a.status).toBe(429);
      expect(Number(a.retryAfter)).toBeGreaterThan(0);
      const { error } = JSON.parse(a.body);
      expect(error.code).toBe('TOO_MANY_REQUESTS');
      expect(error.message).toMatch(/this token already has 2 uploads in progress \(the limit is 2\)/);
      expect(error.hint).toMatch(/SWARM_MAX_UPLOADS_PER_TOKEN/);
    }
    // Another probe from the same token: 429 too.
    const probe = await probeUpload(reg, acme, 'acme/app');
    expect(probe.status).toBe(429);
    expect(probe.retryAfter).toBe('5');

    // At the cap, the registry still answers health checks and resolves.
    for (let i = 0; i < 8; i++) {
      expect((await reg.fetch('/healthz', { token: null })).status).toBe(200);
      const active = await reg.fetch('/internal/workflow/acme%2Fapp/active', { token: acme });
      expect(active.status).toBe(200);
    }
  });

  it('another token still gets a slot, up to the total; past it, 429 naming the total', async () => {
    const other = trickle(reg, beta, 'beta/app', { everyMs: 200, maxMs: 20_000 });
    tricklers.push(other);
    expect(
      await eventually(
        () => uploadsInProgress(reg),
        (n) => n === 3,
      ),
    ).toBe(3);
    const probe = await probeUpload(reg, reg.adminToken, 'beta/app');
    expect(probe.status).toBe(429);
    expect(probe.body.error.message).toMatch(/the registry already has 3 uploads in progress \(the limit is 3\)/);
    expect(probe.body.error.hint).toMatch(/SWARM_MAX_UPLOADS/);
    expect((await reg.fetch('/healthz', { token: null })).status).toBe(200);
  });

  it('slots come back when the uploads end: the next upload goes through, and the tricklers stored nothing', async () => {
    for (const t of tricklers) t.stop();
    const after = await eventually(
      () => probeUpload(reg, acme, 'acme/app'),
      (r) => r.status !== 429,
    );
    expect(after.status).toBe(422);
    const c = reg.client();
    expect((await c.call(() => c.trpc.workflows.versions.query({ workflow: 'acme/app' }))).map((v) => v.version)).toEqual([1]);
    expect(await c.call(() => c.trpc.workflows.versions.query({ workflow: 'beta/app' }))).toEqual([]);
    const ok = await reg.fetch('/internal/bundles?workflow=acme/app', {
      method: 'POST',
      token: acme,
      headers: { 'content-type': 'application/gzip' },
      body: bundleBytes('acme-v2', 4096),
    });
    expect(ok.status).toBe(201);
  });
});

describe('a minimum transfer rate', () => {
  let reg: TestRegistry;
  let token: string;
  beforeAll(async () => {
    reg = await startTestRegistry({
      storage: 'fs',
      env: { LOG_LEVEL: 'warn', SWARM_UPLOAD_MIN_BYTES_PER_SECOND: String(16 * 1024), SWARM_UPLOAD_RATE_WINDOW_SECONDS: '1' },
    });
    token = await tenantWithWorkflow(reg, 'slow');
  });
  afterAll(() => reg?.close());

  it('cuts an upload sending a byte every 100 ms with 408 and a clear message; nothing is stored or registered', async () => {
    const before = await storedFiles(reg);
    const t = trickle(reg, token, 'slow/app', { everyMs: 100, maxMs: 15_000 });
    const answer = await t.answer;
    expect(answer.status).toBe(408);
    const { error } = JSON.parse(answer.body);
    expect(error.code).toBe('TIMEOUT');
    expect(error.message).toMatch(/slower than the minimum of 16384 bytes\/s; nothing was stored/);
    expect(error.hint).toMatch(/SWARM_UPLOAD_MIN_BYTES_PER_SECOND/);
    const c = reg.client();
    expect(await c.call(() => c.trpc.workflows.versions.query({ workflow: 'slow/app' }))).toEqual([]);
    expect(
      await eventually(
        () => storedFiles(reg),
        (files) => files.length === before.length,
      ),
    ).toEqual(before);
  });

  it('lets an upload at full speed through', async () => {
    const body = bundleBytes('fast', 2 * 1024 * 1024);
    const res = await reg.fetch('/internal/bundles?workflow=slow/app', {
      method: 'POST',
      token,
      headers: { 'content-type': 'application/gzip', 'x-bundle-sha256': sha256(body) },
      body,
    });
    expect(res.status).toBe(201);
  });
});
