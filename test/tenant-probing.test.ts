/**
 * A tenant probing another tenant's workflow names (#12 §2): a `tenant/name` of another
 * tenant is refused before anything is looked up, and an unknown workflow costs what a
 * known one does (the release cache keeps misses). Proved structurally, by counting the
 * database queries each call makes through a counting PostgreSQL client; never by timing.
 */
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase } from '../packages/server/src/db/client.js';
import { authenticate, hashAdminToken } from '../packages/server/src/services/auth.js';
import { uploadBundle } from '../packages/server/src/services/bundles.js';
import type { Deps, Principal } from '../packages/server/src/services/context.js';
import { createCallerFactory } from '../packages/server/src/trpc/init.js';
import { createAppRouter } from '../packages/server/src/trpc/router.js';
import { type TestRegistry, bundleBytes, startReplicas, startTestRegistry } from './support/registry.js';

/** The registry's own kind of database handle, on its own pool, counting every query it sends (postgres.js's debug hook). */
async function countingDatabase(url: string) {
  let queries = 0;
  // One connection, opened (and its types fetched) before counting starts.
  const database = connectDatabase(url, { poolSize: 1 });
  await database.sql`select 1`;
  Object.assign(database.sql.options, { debug: () => void queries++ });
  return {
    db: database.db,
    /** Queries sent while `fn` ran. */
    async count(fn: () => Promise<unknown>): Promise<number> {
      const before = queries;
      await fn().catch(() => {});
      return queries - before;
    },
    close: () => database.close(),
  };
}

async function tenantToken(reg: TestRegistry, tenant: string): Promise<string> {
  const c = reg.client();
  return (await c.call(() => c.trpc.tokens.create.mutate({ scope: `tenant:${tenant}` }))).token;
}

/** Tenant `victim` with workflow `secret` (version 1 active), tenant `probe` with a token. */
async function setUp(reg: TestRegistry, victim: string, probe: string) {
  const c = reg.client();
  await c.call(() => c.trpc.tenants.create.mutate({ slug: victim }));
  await c.call(() => c.trpc.tenants.create.mutate({ slug: probe }));
  const secret = await c.call(() => c.trpc.workflows.create.mutate({ tenant: victim, name: 'secret' }));
  const res = await reg.fetch(`/internal/bundles?workflow=${victim}/secret&activate=true`, {
    method: 'POST',
    headers: { 'content-type': 'application/gzip' },
    body: bundleBytes(`${victim}-secret`, 2048),
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return { secret, token: await tenantToken(reg, probe) };
}

describe('a tenant probing workflow names of another tenant', () => {
  let reg: TestRegistry;
  let counting: Awaited<ReturnType<typeof countingDatabase>>;
  let deps: Deps;
  let principal: Principal;
  let token: string;
  let secretId: string;
  const caller = () => createCallerFactory(createAppRouter(deps))({ principal: async () => principal, reportError: () => {} });

  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn' } });
    const setup = await setUp(reg, 'acme', 'mallory');
    token = setup.token;
    secretId = setup.secret.id;
    counting = await countingDatabase(reg.deps.config.databaseUrl!);
    deps = { ...reg.deps, db: counting.db };
    principal = (await authenticate({ ...deps, adminTokenHash: hashAdminToken(reg.adminToken) }, `Bearer ${token}`))!;
  });
  afterAll(async () => {
    await counting?.close();
    await reg?.close();
  });

  it('REST resolve: the same 404 body for a workflow of another tenant that exists and one that does not', async () => {
    const answers = [];
    for (const ref of ['acme%2Fsecret', 'acme%2Fnothing-here']) {
      const res = await reg.fetch(`/internal/workflow/${ref}/active`, { token });
      answers.push({ status: res.status, body: await res.json() });
    }
    expect(answers[0]!.status).toBe(404);
    expect(answers[1]!.body.error.code).toBe(answers[0]!.body.error.code);
    expect(answers[1]!.body.error.message.replace('nothing-here', 'secret')).toBe(answers[0]!.body.error.message);
  });

  /** Every procedure that takes a workflow (or tenant) ref, called with `ref`. */
  const procedures = (ref: string, tenant: string): Record<string, () => Promise<unknown>> => {
    const c = caller();
    return {
      'workflows.get': () => c.workflows.get({ workflow: ref }),
      'workflows.versions': () => c.workflows.versions({ workflow: ref }),
      'workflows.create': () => c.workflows.create({ tenant, name: 'new' }),
      'workflows.list': () => c.workflows.list({ tenant }),
      'tenants.get': () => c.tenants.get({ tenant }),
      'versions.register': () => c.versions.register({ workflow: ref, bundleHash: 'a'.repeat(64) }),
      'versions.activate': () => c.versions.activate({ workflow: ref, version: 1 }),
      'versions.active': () => c.versions.active({ workflow: ref }),
      'releases.state': () => c.releases.state({ workflow: ref }),
      'releases.history': () => c.releases.history({ workflow: ref }),
      'releases.diff': () => c.releases.diff({ workflow: ref, from: 1, to: 1 }),
      'releases.rollback': () => c.releases.rollback({ workflow: ref }),
      'releases.setCanary': () => c.releases.setCanary({ workflow: ref, version: 1, weight: 10 }),
      'releases.clearCanary': () => c.releases.clearCanary({ workflow: ref }),
      'releases.promote': () => c.releases.promote({ workflow: ref }),
      'executions.spawn': () => c.executions.spawn({ workflow: ref }),
      'executions.list': () => c.executions.list({ workflow: ref }),
      'POST /internal/bundles': () =>
        uploadBundle(deps, principal, { workflow: ref, activate: false, body: Readable.from([bundleBytes('probe', 100)]) }),
    };
  };

  it('looks nothing up for a tenant/name of another tenant, whether it exists or not, in every procedure (0 queries)', async () => {
    for (const ref of ['acme/secret', 'acme/nothing-here', 'nobody/secret']) {
      for (const [name, call] of Object.entries(procedures(ref, ref.split('/')[0]!))) {
        const err = await call().then(
          () => undefined,
          (e: { code?: string }) => e,
        );
        // executions.* need an orchestrator token today, whatever the workflow: refused before any lookup too.
        expect(name.startsWith('executions.') ? ['FORBIDDEN', 'NOT_FOUND'] : ['NOT_FOUND'], `${name} ${ref}`).toContain(err?.code);
        expect(await counting.count(call), `${name} ${ref}`).toBe(0);
      }
    }
  });

  it('a tenant id of another tenant is refused before any lookup too', async () => {
    const acme = await reg.client().call(() => reg.client().trpc.tenants.get.query({ tenant: 'acme' }));
    expect(await counting.count(() => caller().tenants.get({ tenant: acme.id }))).toBe(0);
    expect(await counting.count(() => caller().workflows.list({ tenant: acme.id }))).toBe(0);
  });

  it("another tenant's workflow id takes the path of an unknown id: the same queries, then both cached (0 queries)", async () => {
    const unknown = '00000000-0000-4000-8000-000000000000';
    const resolve = (workflow: string) => () => caller().versions.active({ workflow });
    reg.deps.caches.releases.invalidate(secretId);
    const first = [await counting.count(resolve(secretId)), await counting.count(resolve(unknown))];
    expect(first[0]).toBeGreaterThan(0);
    expect(first[1]).toBe(first[0]);
    expect([await counting.count(resolve(secretId)), await counting.count(resolve(unknown))]).toEqual([0, 0]);
    // Found by get (not cached) the same way: one lookup each.
    const get = (workflow: string) => () => caller().workflows.get({ workflow });
    expect(await counting.count(get(unknown))).toBe(await counting.count(get(secretId)));
  });

  it('its own workflows still resolve, by tenant/name and by id', async () => {
    const c = reg.client();
    const own = await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'mallory', name: 'own' }));
    expect((await caller().workflows.get({ workflow: 'mallory/own' })).name).toBe('own');
    expect((await caller().workflows.get({ workflow: own.id })).name).toBe('own');
    expect((await caller().workflows.list({ tenant: 'mallory' })).map((w) => w.name)).toEqual(['own']);
    const res = await reg.fetch('/internal/workflow/mallory%2Fown/active', { token });
    expect(res.status).toBe(404);
    expect((await res.json()).error.message).toMatch(/no active version/);
  });
});

describe('misses are cached like hits, across replicas', () => {
  let a: TestRegistry;
  let b: TestRegistry;
  let counting: Awaited<ReturnType<typeof countingDatabase>>;
  beforeAll(async () => {
    ({ a, b } = await startReplicas());
    counting = await countingDatabase(b.deps.config.databaseUrl!);
    const c = a.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'late' }));
  });
  afterAll(async () => {
    await counting?.close();
    await a?.close();
    await b?.close();
  });

  it('an unknown tenant/name is looked up once, then answered from the cache; created on A, B finds it', async () => {
    const lookup = () => b.deps.caches.releases.lookup(counting.db, 'late/app');
    expect(await counting.count(lookup)).toBe(1);
    expect(await lookup()).toBeNull();
    expect(await counting.count(lookup)).toBe(0);

    const c = a.client();
    const wf = await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'late', name: 'app' }));
    // The creation's notification drops B's "missing" entry: bounded wait (5 s), no timing asserted.
    let found = await lookup();
    for (let i = 0; !found && i < 250; i++) {
      await new Promise((r) => setTimeout(r, 20));
      found = await lookup();
    }
    expect(found?.workflow.id).toBe(wf.id);
    // Over HTTP too, on both replicas.
    for (const reg of [a, b])
      expect((await reg.fetch('/trpc/workflows.get?input=%7B%22workflow%22%3A%22late%2Fapp%22%7D')).status).toBe(200);
  });
});
