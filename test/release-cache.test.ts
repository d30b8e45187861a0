/**
 * The per-replica release and token caches (packages/server/src/services/release-cache.ts)
 * against real replicas: two registries on one database and one bucket. A change made on
 * A must reach B's answers within the notification's delay; while B's listener is cut off
 * B serves nothing from its cache; with caching off, every answer comes from the database.
 * Delays are measured and reported (as annotations), never asserted: only a bounded wait.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../packages/server/src/config.js';
import { LiveCache } from '../packages/server/src/services/release-cache.js';
import { routingBucket } from '../packages/server/src/services/releases.js';
import { type TestRegistry, bundleBytes, createTestDatabase, startReplicas, startTestRegistry } from './support/registry.js';
import { type TcpProxy, startTcpProxy } from './support/tcp-proxy.js';

const WAIT_MS = 5_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Calls `fn` until `done(value)` (every 20 ms, at most WAIT_MS); returns the value and how long it took. */
async function eventually<T>(fn: () => Promise<T>, done: (v: T) => boolean): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  let value = await fn();
  for (let i = 0; !done(value) && performance.now() - started < WAIT_MS && i < 1000; i++) {
    await sleep(20);
    value = await fn();
  }
  return { value, ms: Math.round(performance.now() - started) };
}

async function upload(reg: TestRegistry, workflow: string, seed: string): Promise<number> {
  const res = await reg.fetch(`/internal/bundles?workflow=${encodeURIComponent(workflow)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/gzip' },
    body: bundleBytes(seed, 2048),
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()).version;
}

/** GET /internal/workflow/:id/active on `reg` with `token`: the status and the version answered. */
async function resolveOn(reg: TestRegistry, workflowId: string, token: string): Promise<{ status: number; version?: number }> {
  const res = await reg.fetch(`/internal/workflow/${workflowId}/active`, { token });
  const body = await res.json();
  return { status: res.status, version: body.version };
}

/** A tenant with one workflow holding versions 1..n (version 1 active); returns the workflow's id. */
async function workflowWithVersions(reg: TestRegistry, tenant: string, n: number): Promise<string> {
  const c = reg.client();
  await c.call(() => c.trpc.tenants.create.mutate({ slug: tenant }));
  const wf = await c.call(() => c.trpc.workflows.create.mutate({ tenant, name: 'app' }));
  for (let i = 1; i <= n; i++) expect(await upload(reg, `${tenant}/app`, `${tenant}-v${i}-${randomBytes(4).toString('hex')}`)).toBe(i);
  await c.call(() => c.trpc.versions.activate.mutate({ workflow: wf.id, version: 1 }));
  return wf.id;
}

async function orchestratorToken(reg: TestRegistry): Promise<{ id: string; token: string }> {
  const c = reg.client();
  return c.call(() => c.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'cache test' }));
}

describe('two replicas on one database: changes on A reach B through the notification', () => {
  let a: TestRegistry;
  let b: TestRegistry;
  let token: string;
  beforeAll(async () => {
    ({ a, b } = await startReplicas());
    token = (await orchestratorToken(a)).token;
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  /** Resolves on B until B has the workflow cached with version `version` active. */
  async function warm(id: string, version: number) {
    const { value } = await eventually(
      async () => ((await resolveOn(b, id, token)).version === version ? b.deps.caches.releases.peek(id)?.active?.version : undefined),
      (v) => v === version,
    );
    expect(value, 'B caches the active version').toBe(version);
  }

  it('an activation on A is answered by B within a bounded wait, though B had the old version cached', async ({ annotate }) => {
    const id = await workflowWithVersions(a, 'act', 2);
    await warm(id, 1);
    const ca = a.client();
    await ca.call(() => ca.trpc.versions.activate.mutate({ workflow: id, version: 2 }));
    const seen = await eventually(
      () => resolveOn(b, id, token),
      (r) => r.version === 2,
    );
    expect(seen.value).toEqual({ status: 200, version: 2 });
    await annotate(`B answered the new version ${seen.ms} ms after A's activation returned`);
    // A, where the change was made, answers it at once.
    expect(await resolveOn(a, id, token)).toEqual({ status: 200, version: 2 });
  });

  it('a rollback on A is answered by B within a bounded wait', async ({ annotate }) => {
    const id = await workflowWithVersions(a, 'rb', 2);
    const ca = a.client();
    await ca.call(() => ca.trpc.versions.activate.mutate({ workflow: id, version: 2 }));
    await warm(id, 2);
    await ca.call(() => ca.trpc.releases.rollback.mutate({ workflow: id }));
    const seen = await eventually(
      () => resolveOn(b, id, token),
      (r) => r.version === 1,
    );
    expect(seen.value).toEqual({ status: 200, version: 1 });
    await annotate(`B answered the rolled-back version after ${seen.ms} ms`);
  });

  it("a canary set and cleared on A reaches B's cache and B's spawns; a promotion reaches B's resolves", async ({ annotate }) => {
    const id = await workflowWithVersions(a, 'can', 2);
    const ca = a.client();
    const cb = b.client(token);
    await warm(id, 1);
    expect(b.deps.caches.releases.peek(id)?.canary).toBeNull();

    // A routing key whose bucket (0–99) lies under weight 99: its spawns go to the canary.
    const routingKey = Array.from({ length: 100 }, (_, i) => `key-${i}`).find((k) => routingBucket(id, k) < 99)!;
    await ca.call(() => ca.trpc.releases.setCanary.mutate({ workflow: id, version: 2, weight: 99 }));
    const set = await eventually(
      async () => (await resolveOn(b, id, token), b.deps.caches.releases.peek(id)?.canary),
      (canary) => canary?.version === 2,
    );
    expect(set.value).toMatchObject({ version: 2, weight: 99 });
    await annotate(`B cached the canary after ${set.ms} ms`);
    const onCanary = await cb.call(() => cb.trpc.executions.spawn.mutate({ workflow: id, routingKey }));
    expect(onCanary.execution).toMatchObject({ version: 2, versionReason: 'canary' });

    await ca.call(() => ca.trpc.releases.clearCanary.mutate({ workflow: id }));
    const cleared = await eventually(
      async () => (await resolveOn(b, id, token), b.deps.caches.releases.peek(id)),
      (entry) => entry !== undefined && entry.canary === null,
    );
    expect(cleared.value?.canary).toBeNull();
    await annotate(`B dropped the cleared canary after ${cleared.ms} ms`);
    const onActive = await cb.call(() => cb.trpc.executions.spawn.mutate({ workflow: id, routingKey }));
    expect(onActive.execution).toMatchObject({ version: 1, versionReason: 'active' });

    await ca.call(() => ca.trpc.releases.setCanary.mutate({ workflow: id, version: 2, weight: 10 }));
    await warm(id, 1);
    await ca.call(() => ca.trpc.releases.promote.mutate({ workflow: id }));
    const promoted = await eventually(
      () => resolveOn(b, id, token),
      (r) => r.version === 2,
    );
    expect(promoted.value).toEqual({ status: 200, version: 2 });
    await annotate(`B answered the promoted version after ${promoted.ms} ms`);
  });

  it('spawns on B pick what the database says even while the cache is behind, then the cached version once it caught up', async () => {
    const id = await workflowWithVersions(a, 'spw', 2);
    const cb = b.client(token);
    await warm(id, 1);
    const ca = a.client();
    await ca.call(() => ca.trpc.versions.activate.mutate({ workflow: id, version: 2 }));
    // No waiting: the spawn's own locked read of the workflow decides, not the cache.
    const spawned = await cb.call(() => cb.trpc.executions.spawn.mutate({ workflow: id }));
    expect(spawned.execution).toMatchObject({ version: 2, versionReason: 'active' });
    expect(spawned.metadata.bundle?.hash).toBe(
      (await ca.call(() => ca.trpc.workflows.versions.query({ workflow: id }))).find((v) => v.version === 2)?.bundleHash,
    );
  });

  it("hands out the same signed URL again while more than half its lifetime is left, with the URL's own expiry", async () => {
    const id = await workflowWithVersions(a, 'url', 1);
    const first = await (await b.fetch(`/internal/workflow/${id}/active`, { token })).json();
    const again = await (await b.fetch(`/internal/workflow/${id}/active`, { token })).json();
    expect(again.bundleUrl).toBe(first.bundleUrl);
    expect(again.expiresAt).toBe(first.expiresAt);
    // SigV4: the URL expires X-Amz-Expires seconds after X-Amz-Date.
    const q = new URL(first.bundleUrl).searchParams;
    const date = q.get('X-Amz-Date')!.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z');
    expect(new Date(Date.parse(date) + Number(q.get('X-Amz-Expires')) * 1000).toISOString()).toBe(first.expiresAt);
    expect(Number(q.get('X-Amz-Expires'))).toBe(b.deps.config.urlTtlSeconds);
    const download = await fetch(first.bundleUrl);
    expect(download.status).toBe(200);
  });

  it('a token revoked on A is refused by B within a bounded wait, though B had it cached', async ({ annotate }) => {
    const id = await workflowWithVersions(a, 'tok', 1);
    const own = await orchestratorToken(a);
    expect(await resolveOn(b, id, own.token)).toEqual({ status: 200, version: 1 });
    expect(await resolveOn(b, id, own.token)).toEqual({ status: 200, version: 1 });
    const ca = a.client();
    await ca.call(() => ca.trpc.tokens.revoke.mutate({ id: own.id }));
    // Revoked where it was revoked: refused at once.
    expect((await resolveOn(a, id, own.token)).status).toBe(401);
    const seen = await eventually(
      () => resolveOn(b, id, own.token),
      (r) => r.status === 401,
    );
    expect(seen.value.status).toBe(401);
    await annotate(`B refused the revoked token after ${seen.ms} ms`);
  });

  it('a resolve that read the database before an activation never leaves its stale answer cached (20 rounds under load)', async () => {
    const id = await workflowWithVersions(a, 'race', 2);
    const ca = a.client();
    for (let round = 0; round < 20; round++) {
      const next = round % 2 === 0 ? 2 : 1;
      let stop = false;
      // 8 callers resolve on B without pause while A activates the other version.
      const hammering = Array.from({ length: 8 }, async () => {
        for (let i = 0; !stop && i < 2000; i++) await resolveOn(b, id, token);
      });
      await sleep(round % 5);
      await ca.call(() => ca.trpc.versions.activate.mutate({ workflow: id, version: next }));
      const seen = await eventually(
        () => resolveOn(b, id, token),
        (r) => r.version === next,
      );
      stop = true;
      await Promise.all(hammering);
      expect(seen.value.version, `round ${round}`).toBe(next);
      // Every read that started before the activation has finished: none may have cached the old version.
      for (let i = 0; i < 3; i++) expect((await resolveOn(b, id, token)).version, `round ${round}`).toBe(next);
    }
  });

  it("B's listener, cut off by terminating its PostgreSQL backend, subscribes again and later changes reach B", async ({ annotate }) => {
    const id = await workflowWithVersions(a, 'term', 2);
    await warm(id, 1);
    const sql = postgres(a.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
    try {
      const pids = () =>
        sql<
          { pid: number }[]
        >`select pid from pg_stat_activity where datname = current_database() and application_name = 'swarm-registry-listener'`;
      const before = (await pids()).map((r) => r.pid);
      expect(before).toHaveLength(2); // A's and B's
      await sql`select pg_terminate_backend(pid) from pg_stat_activity where pid in ${sql(before)}`;
      const back = await eventually(
        async () => (await pids()).map((r) => r.pid).filter((pid) => !before.includes(pid)),
        (fresh) => fresh.length === 2,
      );
      expect(back.value).toHaveLength(2);
      await annotate(`both listeners subscribed again after ${back.ms} ms`);
      // B emptied its cache when it subscribed again, and fills it again.
      await warm(id, 1);
      const ca = a.client();
      await ca.call(() => ca.trpc.versions.activate.mutate({ workflow: id, version: 2 }));
      const seen = await eventually(
        () => resolveOn(b, id, token),
        (r) => r.version === 2,
      );
      expect(seen.value).toEqual({ status: 200, version: 2 });
    } finally {
      await sql.end();
    }
  });
});

describe('a replica whose PostgreSQL connection is cut (listener included)', () => {
  let a: TestRegistry;
  let b: TestRegistry;
  let proxy: TcpProxy;
  let token: string;
  beforeAll(async () => {
    const databaseUrl = await createTestDatabase();
    const bucket = `swarm-test-${randomBytes(6).toString('hex')}`;
    const viaProxy = new URL(databaseUrl);
    proxy = await startTcpProxy({ host: viaProxy.hostname, port: Number(viaProxy.port) });
    viaProxy.port = String(proxy.port);
    a = await startTestRegistry({ storage: 's3', databaseUrl, bucket, env: { LOG_LEVEL: 'warn' } });
    b = await startTestRegistry({ storage: 's3', databaseUrl: viaProxy.toString(), bucket, env: { LOG_LEVEL: 'warn' } });
    token = (await orchestratorToken(a)).token;
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await proxy?.close();
  });

  it('serves nothing from its cache while cut off, and answers an activation made meanwhile as soon as it is back', async ({
    annotate,
  }) => {
    const id = await workflowWithVersions(a, 'cut', 2);
    const warmed = await eventually(
      async () => (await resolveOn(b, id, token), b.deps.caches.releases.peek(id)?.active?.version),
      (v) => v === 1,
    );
    expect(warmed.value).toBe(1);

    await proxy.cut();
    const down = await eventually(
      () => resolveOn(b, id, token),
      (r) => r.status !== 200,
    );
    // Not a cached 200: B cannot know whether its entry is still true.
    expect(down.value.status).toBe(503);
    expect(b.deps.caches.releases.peek(id)).toBeUndefined();
    const ca = a.client();
    await ca.call(() => ca.trpc.versions.activate.mutate({ workflow: id, version: 2 }));

    await proxy.restore();
    const back = await eventually(
      () => resolveOn(b, id, token),
      (r) => r.status === 200,
    );
    // Its first answer once back is the version activated during the outage.
    expect(back.value).toEqual({ status: 200, version: 2 });
    await annotate(`B answered again ${back.ms} ms after the connection was restored`);
  });
});

describe('caching off (SWARM_CACHE_TTL_SECONDS=0)', () => {
  let a: TestRegistry;
  let b: TestRegistry;
  beforeAll(async () => {
    const databaseUrl = await createTestDatabase();
    const bucket = `swarm-test-${randomBytes(6).toString('hex')}`;
    const env = { LOG_LEVEL: 'warn', SWARM_CACHE_TTL_SECONDS: '0' };
    [a, b] = await Promise.all([
      startTestRegistry({ storage: 's3', databaseUrl, bucket, env }),
      startTestRegistry({ storage: 's3', databaseUrl, bucket, env }),
    ]);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('opens no listener, caches nothing, and the other replica answers a change at once', async () => {
    const { token } = await orchestratorToken(a);
    const id = await workflowWithVersions(a, 'off', 2);
    expect(await resolveOn(b, id, token)).toEqual({ status: 200, version: 1 });
    expect(b.deps.caches.releases.peek(id)).toBeUndefined();
    const ca = a.client();
    await ca.call(() => ca.trpc.versions.activate.mutate({ workflow: id, version: 2 }));
    expect(await resolveOn(b, id, token)).toEqual({ status: 200, version: 2 });
    const sql = postgres(a.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
    try {
      const rows =
        await sql`select 1 from pg_stat_activity where datname = current_database() and application_name = 'swarm-registry-listener'`;
      expect(rows).toHaveLength(0);
    } finally {
      await sql.end();
    }
  });
});

// The race the 20-round test above provokes, made deterministic: the invalidation lands
// while the load's read is in flight (between the read and the store).
describe('LiveCache: what a load may store', () => {
  it('keeps misses apart: however many unknown keys are asked for, what exists stays cached', async () => {
    const cache = new LiveCache<{ key: string }>(60_000, { cacheMisses: true });
    cache.setLive(true);
    for (let i = 0; i < 100; i++)
      await cache.load(
        `known-${i}`,
        async () => ({ key: `known-${i}` }),
        (v) => v.key,
      );
    // Ten times the miss cache's size in keys that name nothing (random workflow ids, say).
    for (let i = 0; i < 10_000; i++)
      await cache.load(
        `unknown-${i}`,
        async () => null,
        (v) => v.key,
      );
    for (let i = 0; i < 100; i++) expect(cache.get(`known-${i}`)).toEqual({ key: `known-${i}` });
    expect(cache.get('unknown-9999')).toBeNull();
    expect(cache.get('unknown-0'), 'the oldest misses went, not the hits').toBeUndefined();
  });

  const live = () => {
    const cache = new LiveCache<{ version: number }>(60_000);
    cache.setLive(true);
    return cache;
  };

  it('stores what it loaded when nothing was invalidated meanwhile', async () => {
    const cache = live();
    await cache.load(
      'wf',
      async () => ({ version: 1 }),
      () => 'wf',
    );
    expect(cache.get('wf')).toEqual({ version: 1 });
  });

  it('does not store an answer read before an invalidation that arrived while it loaded', async () => {
    const cache = live();
    const answer = await cache.load(
      'wf',
      async () => {
        const stale = { version: 1 };
        cache.invalidate('wf');
        return stale;
      },
      () => 'wf',
    );
    expect(answer).toEqual({ version: 1 });
    expect(cache.get('wf')).toBeUndefined();
  });

  it('does not store an answer when the listener went down while it loaded', async () => {
    const cache = live();
    await cache.load(
      'wf',
      async () => (cache.setLive(false), cache.setLive(true), { version: 1 }),
      () => 'wf',
    );
    expect(cache.get('wf')).toBeUndefined();
  });

  it('serves and stores nothing while the listener is down', async () => {
    const cache = live();
    await cache.load(
      'wf',
      async () => ({ version: 1 }),
      () => 'wf',
    );
    cache.setLive(false);
    expect(cache.get('wf')).toBeUndefined();
    await cache.load(
      'wf',
      async () => ({ version: 2 }),
      () => 'wf',
    );
    cache.setLive(true);
    expect(cache.get('wf')).toBeUndefined();
  });

  it('caches nothing with a TTL of 0 (caching off)', async () => {
    const cache = new LiveCache<{ version: number }>(0);
    cache.setLive(true);
    await cache.load(
      'wf',
      async () => ({ version: 1 }),
      () => 'wf',
    );
    expect(cache.get('wf')).toBeUndefined();
  });
});

describe('SWARM_CACHE_TTL_SECONDS', () => {
  it('defaults to 60 seconds', () => {
    expect(loadConfig({}).cacheTtlSeconds).toBe(60);
  });

  it('refuses a negative value', () => {
    expect(() => loadConfig({ SWARM_CACHE_TTL_SECONDS: '-1' })).toThrow(ConfigError);
    expect(() => loadConfig({ SWARM_CACHE_TTL_SECONDS: '-1' })).toThrow(/SWARM_CACHE_TTL_SECONDS/);
  });

  it('refuses more than an hour', () => {
    expect(() => loadConfig({ SWARM_CACHE_TTL_SECONDS: '3601' })).toThrow(/SWARM_CACHE_TTL_SECONDS/);
  });

  it('refuses a value that is not a number', () => {
    expect(() => loadConfig({ SWARM_CACHE_TTL_SECONDS: 'soon' })).toThrow(/SWARM_CACHE_TTL_SECONDS/);
  });
});
