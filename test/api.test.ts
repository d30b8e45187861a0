/**
 * The tRPC API through the typed SDK: tenants, workflows, versions, activation with
 * compare-and-set, tokens and tenant isolation, and bad input that changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SwarmError } from '../packages/sdk/src/index.js';
import { failure } from './support/failure.js';
import { type TestRegistry, bundleBytes, sha256, startTestRegistry } from './support/registry.js';

let reg: TestRegistry;
beforeAll(async () => {
  reg = await startTestRegistry({ storage: 'fs' });
});
afterAll(() => reg?.close());

async function upload(workflow: string, seed: string, extra: Record<string, string> = {}) {
  const body = bundleBytes(seed);
  const query = new URLSearchParams({ workflow, ...extra });
  const res = await reg.fetch(`/internal/bundles?${query}`, { method: 'POST', body, headers: { 'content-type': 'application/gzip' } });
  expect(res.status, await res.clone().text()).toBeLessThan(300);
  return (await res.json()) as { version: number; bundleHash: string; versionId: string };
}

describe('tenants and workflows', () => {
  it('creates, gets and lists tenants', async () => {
    const c = reg.client();
    const t = await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    expect(t.slug).toBe('acme');
    expect(new Date(t.createdAt).toISOString()).toBe(t.createdAt);
    expect(await c.call(() => c.trpc.tenants.get.query({ tenant: 'acme' }))).toEqual(t);
    expect(await c.call(() => c.trpc.tenants.get.query({ tenant: t.id }))).toEqual(t);
    expect((await c.call(() => c.trpc.tenants.list.query())).map((x) => x.slug)).toContain('acme');
  });

  it('refuses a duplicate tenant with CONFLICT', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'dup' }));
    expect((await failure(c.call(() => c.trpc.tenants.create.mutate({ slug: 'dup' })))).code).toBe('CONFLICT');
  });

  it('creates workflows and finds them by id or tenant/name', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'wf-tenant' }));
    const w = await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'wf-tenant', name: 'etl.daily_v2' }));
    expect(w).toMatchObject({ tenant: 'wf-tenant', name: 'etl.daily_v2', activeVersion: null });
    expect(await c.call(() => c.trpc.workflows.get.query({ workflow: w.id }))).toEqual(w);
    expect(await c.call(() => c.trpc.workflows.get.query({ workflow: 'wf-tenant/etl.daily_v2' }))).toEqual(w);
    expect(await c.call(() => c.trpc.workflows.list.query({ tenant: 'wf-tenant' }))).toEqual([w]);
    expect((await failure(c.call(() => c.trpc.workflows.create.mutate({ tenant: 'wf-tenant', name: 'etl.daily_v2' })))).code).toBe(
      'CONFLICT',
    );
  });
});

describe('bad input is refused and changes nothing', () => {
  const badSlugs = {
    'SQL-looking': "acme'; drop table tenants; --",
    'upper case': 'Acme',
    empty: '',
    'too long': 'a'.repeat(64),
    'leading dash': '-acme',
    'with slash': 'a/b',
  };
  for (const [name, slug] of Object.entries(badSlugs)) {
    it(`tenant slug: ${name}`, async () => {
      const c = reg.client();
      const before = await c.call(() => c.trpc.tenants.list.query());
      const err = await failure(c.call(() => c.trpc.tenants.create.mutate({ slug })));
      expect(err.code).toBe('BAD_REQUEST');
      expect(err.message).toMatch(/slug/);
      expect(await c.call(() => c.trpc.tenants.list.query())).toEqual(before);
    });
  }

  it('workflow name that looks like SQL', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'sqli' }));
    const err = await failure(c.call(() => c.trpc.workflows.create.mutate({ tenant: 'sqli', name: "x' OR '1'='1" })));
    expect(err.code).toBe('BAD_REQUEST');
    expect(await c.call(() => c.trpc.workflows.list.query({ tenant: 'sqli' }))).toEqual([]);
  });

  it('workflow in an unknown tenant', async () => {
    const c = reg.client();
    expect((await failure(c.call(() => c.trpc.workflows.create.mutate({ tenant: 'no-such-tenant', name: 'x' })))).code).toBe('NOT_FOUND');
  });

  it('unknown workflow id and unknown tenant/name', async () => {
    const c = reg.client();
    expect((await failure(c.call(() => c.trpc.workflows.get.query({ workflow: '00000000-0000-4000-8000-000000000000' })))).code).toBe(
      'NOT_FOUND',
    );
    expect((await failure(c.call(() => c.trpc.workflows.get.query({ workflow: 'acme/nothing-here' })))).code).toBe('NOT_FOUND');
  });

  it('malformed workflow reference', async () => {
    const c = reg.client();
    for (const workflow of ['not-a-ref', 'a/b/c', '../etc', 'ACME/x']) {
      expect((await failure(c.call(() => c.trpc.workflows.get.query({ workflow })))).code).toBe('BAD_REQUEST');
    }
  });

  it('malformed bundle hashes', async () => {
    const c = reg.client();
    for (const hash of ['abc', 'A'.repeat(64), 'g'.repeat(64), `${'a'.repeat(64)}0`, "' or 1=1 --"]) {
      const err = await failure(c.call(() => c.trpc.bundles.get.query({ hash })));
      expect(err.code).toBe('BAD_REQUEST');
      expect(err.message).toMatch(/sha256/);
    }
  });

  it('version numbers that are not positive integers', async () => {
    const c = reg.client();
    for (const version of [0, -1, 1.5]) {
      expect((await failure(c.call(() => c.trpc.versions.activate.mutate({ workflow: 'acme/x', version })))).code).toBe('BAD_REQUEST');
    }
  });
});

describe('versions', () => {
  it('numbers versions 1, 2, 3 and keeps who, when and why', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'ver' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'ver', name: 'app' }));
    const a = await upload('ver/app', 'v1', { message: 'first' });
    const b = await upload('ver/app', 'v2');
    const d = await upload('ver/app', 'v3', { activate: 'true' });
    expect([a.version, b.version, d.version]).toEqual([1, 2, 3]);
    const history = await c.call(() => c.trpc.workflows.versions.query({ workflow: 'ver/app' }));
    expect(history.map((v) => [v.version, v.active])).toEqual([
      [3, true],
      [2, false],
      [1, false],
    ]);
    expect(history[2]).toMatchObject({ message: 'first', createdBy: 'admin (bootstrap)', bundleHash: sha256(bundleBytes('v1')) });
  });

  it('registers a version from a stored bundle, idempotently', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'reg' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'reg', name: 'one' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'reg', name: 'two' }));
    const first = await upload('reg/one', 'shared');
    const r1 = await c.call(() => c.trpc.versions.register.mutate({ workflow: 'reg/two', bundleHash: first.bundleHash }));
    expect(r1).toMatchObject({ created: true, version: { version: 1, bundleHash: first.bundleHash, active: false } });
    const r2 = await c.call(() => c.trpc.versions.register.mutate({ workflow: 'reg/two', bundleHash: first.bundleHash }));
    expect(r2).toMatchObject({ created: false, version: { id: r1.version.id } });
  });

  it('refuses to register an unknown bundle, or one failing expectedHash', async () => {
    const c = reg.client();
    const unknown = 'f'.repeat(64);
    expect((await failure(c.call(() => c.trpc.versions.register.mutate({ workflow: 'reg/two', bundleHash: unknown })))).code).toBe(
      'NOT_FOUND',
    );
    const stored = sha256(bundleBytes('shared'));
    const err = await failure(
      c.call(() => c.trpc.versions.register.mutate({ workflow: 'reg/two', bundleHash: stored, expectedHash: unknown })),
    );
    expect(err.code).toBe('PRECONDITION_FAILED');
    expect(await c.call(() => c.trpc.workflows.versions.query({ workflow: 'reg/two' }))).toHaveLength(1);
  });

  it('activates with compare-and-set: a stale expectation is a CONFLICT', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'cas' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'cas', name: 'app' }));
    await upload('cas/app', 'c1');
    await upload('cas/app', 'c2');
    const v1 = await c.call(() => c.trpc.versions.activate.mutate({ workflow: 'cas/app', version: 1, expectedActiveVersion: null }));
    expect(v1).toMatchObject({ version: 1, active: true });
    const err = await failure(c.call(() => c.trpc.versions.activate.mutate({ workflow: 'cas/app', version: 2, expectedActiveVersion: 2 })));
    expect(err.code).toBe('CONFLICT');
    expect(err.hint).toMatch(/--expect/);
    expect((await c.resolveActive('cas/app')).version).toBe(1);
    expect((await failure(c.call(() => c.trpc.versions.activate.mutate({ workflow: 'cas/app', version: 9 })))).code).toBe('NOT_FOUND');
  });

  it('lets exactly one of racing compare-and-set activations win', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'race' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'race', name: 'app' }));
    for (let i = 1; i <= 6; i++) await upload('race/app', `race-${i}`);
    await c.call(() => c.trpc.versions.activate.mutate({ workflow: 'race/app', version: 1 }));
    const results = await Promise.allSettled(
      [2, 3, 4, 5, 6].map((version) =>
        c.call(() => c.trpc.versions.activate.mutate({ workflow: 'race/app', version, expectedActiveVersion: 1 })),
      ),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as SwarmError).code).toBe('CONFLICT');
    const winner = (won[0] as PromiseFulfilledResult<{ version: number }>).value.version;
    expect((await c.resolveActive('race/app')).version).toBe(winner);
  });

  it('keeps version numbers gapless under concurrent uploads', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'conc' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'conc', name: 'app' }));
    await Promise.all(Array.from({ length: 8 }, (_, i) => upload('conc/app', `conc-${i}`)));
    const versions = await c.call(() => c.trpc.workflows.versions.query({ workflow: 'conc/app' }));
    expect(versions.map((v) => v.version).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('says how to fix a workflow with no active version', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'conc', name: 'idle' }));
    const err = await failure(c.resolveActive('conc/idle'));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.hint).toBe('activate one: swarm activate conc/idle <version>');
  });
});

describe('tokens and tenancy', () => {
  it('gives a tenant token its own tenant only, and 404 for anything else', async () => {
    const admin = reg.client();
    await admin.call(() => admin.trpc.tenants.create.mutate({ slug: 'alpha' }));
    await admin.call(() => admin.trpc.tenants.create.mutate({ slug: 'beta' }));
    const betaWf = await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'beta', name: 'secret-app' }));
    const betaUpload = await upload('beta/secret-app', 'beta-bytes', { activate: 'true' });
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'tenant:alpha', name: 'alpha-ci' }));
    const alpha = reg.client(token);

    expect((await alpha.call(() => alpha.trpc.tenants.list.query())).map((t) => t.slug)).toEqual(['alpha']);
    const own = await alpha.call(() => alpha.trpc.workflows.create.mutate({ tenant: 'alpha', name: 'app' }));
    expect(own.tenant).toBe('alpha');

    const notFound = [
      () => alpha.call(() => alpha.trpc.tenants.get.query({ tenant: 'beta' })),
      () => alpha.call(() => alpha.trpc.workflows.list.query({ tenant: 'beta' })),
      () => alpha.call(() => alpha.trpc.workflows.get.query({ workflow: betaWf.id })),
      () => alpha.call(() => alpha.trpc.workflows.get.query({ workflow: 'beta/secret-app' })),
      () => alpha.call(() => alpha.trpc.workflows.versions.query({ workflow: 'beta/secret-app' })),
      () => alpha.call(() => alpha.trpc.workflows.create.mutate({ tenant: 'beta', name: 'intruder' })),
      () => alpha.call(() => alpha.trpc.versions.activate.mutate({ workflow: 'beta/secret-app', version: 1 })),
      () => alpha.resolveActive('beta/secret-app'),
      () => alpha.call(() => alpha.trpc.bundles.get.query({ hash: betaUpload.bundleHash })),
      // Knowing another tenant's hash is not enough to register it.
      () => alpha.call(() => alpha.trpc.versions.register.mutate({ workflow: 'alpha/app', bundleHash: betaUpload.bundleHash })),
    ];
    for (const call of notFound) expect((await failure(call())).code).toBe('NOT_FOUND');
    expect(await alpha.call(() => alpha.trpc.bundles.exists.query({ hash: betaUpload.bundleHash }))).toBe(false);

    const forbidden = [
      () => alpha.call(() => alpha.trpc.tenants.create.mutate({ slug: 'gamma' })),
      () => alpha.call(() => alpha.trpc.tokens.list.query()),
    ];
    for (const call of forbidden) expect((await failure(call())).code).toBe('FORBIDDEN');
    expect(await admin.call(() => admin.trpc.workflows.list.query({ tenant: 'beta' }))).toHaveLength(1);
  });

  it('lets the orchestrator read and resolve everything but change nothing', async () => {
    const admin = reg.client();
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator' }));
    const orch = reg.client(token);
    expect((await orch.resolveActive('beta/secret-app')).version).toBe(1);
    expect((await failure(orch.call(() => orch.trpc.workflows.create.mutate({ tenant: 'beta', name: 'x' })))).code).toBe('FORBIDDEN');
    expect((await failure(orch.call(() => orch.trpc.versions.activate.mutate({ workflow: 'beta/secret-app', version: 1 })))).code).toBe(
      'FORBIDDEN',
    );
  });

  it('refuses missing, malformed and revoked tokens with 401 and no detail', async () => {
    const admin = reg.client();
    const created = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'admin', name: 'short-lived' }));
    const listed = await admin.call(() => admin.trpc.tokens.list.query());
    expect(listed.find((t) => t.id === created.id)).toMatchObject({ name: 'short-lived', scope: 'admin', revokedAt: null });
    expect(JSON.stringify(listed)).not.toContain(created.token);
    expect((await reg.client(created.token).call(() => reg.client(created.token).trpc.tenants.list.query())).length).toBeGreaterThan(0);
    await admin.call(() => admin.trpc.tokens.revoke.mutate({ id: created.id }));

    for (const token of [created.token, 'swt_nope', `${reg.adminToken}x`, 'bad token with spaces']) {
      const c = reg.client(token);
      const err = await failure(c.call(() => c.trpc.tenants.list.query()));
      expect(err.code).toBe('UNAUTHORIZED');
      expect(err.message).toBe('missing or invalid bearer token');
    }
    const res = await reg.fetch('/trpc/tenants.list', { token: null });
    expect(res.status).toBe(401);
    expect(await reg.fetch(`/internal/bundles/${'a'.repeat(64)}`, { token: null }).then((r) => r.status)).toBe(401);
    expect(await reg.fetch('/metrics', { token: null }).then((r) => r.status)).toBe(401);
  });

  it('refuses an unknown token scope', async () => {
    const c = reg.client();
    const err = await failure(c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:' as 'admin' })));
    expect(err.code).toBe('BAD_REQUEST');
    expect((await failure(c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:ghost' })))).code).toBe('NOT_FOUND');
  });
});

describe('logs', () => {
  it('never contain tokens or URL signatures', async () => {
    const c = reg.client();
    const active = await c.resolveActive('beta/secret-app');
    expect(sha256(await (await fetch(active.bundleUrl)).arrayBuffer())).toBe(active.bundleHash);
    const signature = new URL(active.bundleUrl).searchParams.get('signature')!;
    const all = reg.logs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    expect(all).not.toContain(reg.adminToken);
    expect(all).not.toContain(signature);
    expect(all).not.toMatch(/swt_[A-Za-z0-9_-]{20,}/);
  });
});
