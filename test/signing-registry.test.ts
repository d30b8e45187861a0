/**
 * Signed bundles on the registry (docs/signing.md), against the real PostgreSQL and S3
 * server: keys added under the registry's trust root, signatures checked and stored at
 * push and by `keys.sign`, the tenant's policy at activation, canary, promote and
 * rollback, revocation at release and spawn, and the VM end to end with the process
 * driver: a signed bundle boots under a trust root; a version put into the database by
 * SQL (a compromised registry) is refused by the VM with exit 67. Each refused request
 * leaves the release and its history as they were.
 */
import { execFile } from 'node:child_process';
import { type KeyObject, createHash, generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSwarmClient } from '../packages/sdk/src/index.js';
import { runVm, spawnWorkflow } from '../packages/sdk/src/orchestrator/index.js';
import { createDelegation, signStatement } from '../packages/sdk/src/signing/index.js';
import type { RegistryError } from '../packages/server/src/errors.js';
import type { Deps, Principal } from '../packages/server/src/services/context.js';
import { createCaches } from '../packages/server/src/services/release-cache.js';
import { addSigningKey, changeSignaturePolicy, revokeKey } from '../packages/server/src/services/signing.js';
import { resolveActive } from '../packages/server/src/services/versions.js';
import { bundleOf } from './support/bundles.js';
import { failure } from './support/failure.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

const agentPath = path.resolve(import.meta.dirname, '../packages/boot-agent/dist/boot-agent.mjs');
const DAY = 86_400_000;
type Pair = { publicKey: KeyObject; privateKey: KeyObject };
const pair = (): Pair => generateKeyPairSync('ed25519');

let reg: TestRegistry;
let work: string;
let databaseUrl: string;
const root = pair();
const ci = pair();
const ciPem = ci.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
let rootFile: string;
const delegate = (tenant: string, key: Pair, by: Pair = root, notAfter = new Date(Date.now() + 90 * DAY)) =>
  createDelegation(by.privateKey, { tenant, publicKey: key.publicKey, notAfter });

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-signing-'));
  rootFile = path.join(work, 'root.pub');
  await fs.writeFile(rootFile, root.publicKey.export({ type: 'spki', format: 'pem' }));
  const { createTestDatabase } = await import('./support/registry.js');
  databaseUrl = await createTestDatabase();
  reg = await startTestRegistry({ storage: 's3', databaseUrl, env: { SWARM_TRUST_ROOT: rootFile } });
  const c = reg.client();
  await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
  await c.call(() => c.trpc.tenants.create.mutate({ slug: 'globex' }));
  await c.call(() => c.trpc.keys.add.mutate({ tenant: 'acme', delegation: delegate('acme', ci) }));
  await promisify(execFile)('pnpm', ['--filter', '@swarm/boot-agent', 'run', 'build']);
});
afterAll(async () => {
  await reg?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

let n = 0;
/** A workflow of acme with one version per entry of `signed` (signed with ci's key or not); none active. */
async function workflowWith(signed: boolean[], entry = 'echo SIGNED-RAN') {
  const c = reg.client();
  const name = `wf${++n}`;
  await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
  const ref = `acme/${name}`;
  for (const [i, s] of signed.entries()) {
    const file = await bundleOf(path.join(work, `${name}-${i}`), {
      'swarm.json': JSON.stringify({ entrypoint: ['sh', '-c', `${entry} ${i + 1}`] }),
    });
    await c.uploadBundle(file, { workflow: ref, ...(s ? { signingKey: ci.privateKey } : {}) });
  }
  return ref;
}

const policy = (signatures: 'off' | 'warn' | 'enforce') => {
  const c = reg.client();
  return c.call(() => c.trpc.keys.setPolicy.mutate({ tenant: 'acme', signatures }));
};
const activate = (ref: string, version: number) => {
  const c = reg.client();
  return c.call(() => c.trpc.versions.activate.mutate({ workflow: ref, version }));
};
const history = (ref: string) => {
  const c = reg.client();
  return c.call(() => c.trpc.releases.history.query({ workflow: ref }));
};

describe('keys', () => {
  it('lists the key added, by its id', async () => {
    const c = reg.client();
    const keys = await c.call(() => c.trpc.keys.list.query({ tenant: 'acme' }));
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ tenant: 'acme', revokedAt: null });
    expect(keys[0]!.keyId).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses a delegation for another tenant', async () => {
    const c = reg.client();
    const err = await failure(c.call(() => c.trpc.keys.add.mutate({ tenant: 'globex', delegation: delegate('acme', pair()) })));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toContain('is for tenant "acme", not "globex"');
    expect(await c.call(() => c.trpc.keys.list.query({ tenant: 'globex' }))).toEqual([]);
  });

  it('refuses a delegation the registry’s root did not sign', async () => {
    const c = reg.client();
    const err = await failure(c.call(() => c.trpc.keys.add.mutate({ tenant: 'globex', delegation: delegate('globex', pair(), pair()) })));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toContain('not signed by the trust root');
    expect(await c.call(() => c.trpc.keys.list.query({ tenant: 'globex' }))).toEqual([]);
  });

  it('refuses an expired delegation', async () => {
    const c = reg.client();
    const expired = delegate('globex', pair(), root, new Date(Date.now() - 1000));
    const err = await failure(c.call(() => c.trpc.keys.add.mutate({ tenant: 'globex', delegation: expired })));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toContain('expired');
  });

  it("another tenant's token cannot add a key (not found)", async () => {
    const c = reg.client();
    const { token } = await c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:globex' }));
    const g = reg.client(token);
    const err = await failure(g.call(() => g.trpc.keys.add.mutate({ tenant: 'acme', delegation: delegate('acme', pair()) })));
    expect(err.code).toBe('NOT_FOUND');
  });

  it('policy is admin-only to set, readable by the tenant', async () => {
    const c = reg.client();
    const { token } = await c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:acme' }));
    const t = reg.client(token);
    expect((await failure(t.call(() => t.trpc.keys.setPolicy.mutate({ tenant: 'acme', signatures: 'off' })))).code).toBe('FORBIDDEN');
    expect(await t.call(() => t.trpc.keys.policy.query({ tenant: 'acme' }))).toEqual({ tenant: 'acme', signatures: 'off' });
  });
});

describe('signatures at push and sign', () => {
  it('a signed push stores the signature with the version', async () => {
    const ref = await workflowWith([true, false]);
    const c = reg.client();
    const versions = await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }));
    expect(versions.find((v) => v.version === 1)?.signature).toMatchObject({ keyRevoked: false });
    expect(versions.find((v) => v.version === 2)?.signature).toBeNull();
  });

  it('refuses a statement about another bundle, and stores nothing', async () => {
    const ref = await workflowWith([false]);
    const c = reg.client();
    const s = signStatement(ci.privateKey, { tenant: 'acme', workflow: ref.split('/')[1]!, bundleHash: 'f'.repeat(64) });
    const err = await failure(c.call(() => c.trpc.keys.sign.mutate({ workflow: ref, version: 1, ...s })));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toContain('the statement is about');
    const [v] = await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }));
    expect(v!.signature).toBeNull();
  });

  it('refuses a signature by a key the tenant does not have', async () => {
    const ref = await workflowWith([false]);
    const c = reg.client();
    const [v] = await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }));
    const s = signStatement(pair().privateKey, { tenant: 'acme', workflow: ref.split('/')[1]!, bundleHash: v!.bundleHash });
    const err = await failure(c.call(() => c.trpc.keys.sign.mutate({ workflow: ref, version: 1, ...s })));
    expect(err.message).toContain('is not a key of tenant "acme"');
  });

  /** A shell pipeline's upload: the bundle's bytes, signed with ci's key as a statement about `bundleHash` (default: the bytes' own). */
  async function restUpload(label: string, bundleHash?: string) {
    const ref = await workflowWith([]);
    const bytes = await fs.readFile(await bundleOf(path.join(work, label), { 'main.sh': `echo ${label}\n` }));
    const hash = bundleHash ?? createHash('sha256').update(bytes).digest('hex');
    const s = signStatement(ci.privateKey, { tenant: 'acme', workflow: ref.split('/')[1]!, bundleHash: hash });
    const headers = { 'x-bundle-statement': s.statement, 'x-bundle-signature': s.signature, 'x-bundle-key-id': s.keyId };
    const res = await reg.fetch(`/internal/bundles?workflow=${encodeURIComponent(ref)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/gzip', ...headers },
      body: bytes,
    });
    const c = reg.client();
    return { res, keyId: s.keyId, versions: () => c.call(() => c.trpc.workflows.versions.query({ workflow: ref })) };
  }

  it('REST: a shell pipeline signs with the three headers', async () => {
    const { res, keyId, versions } = await restUpload('rest-signed');
    expect(res.status, await res.clone().text()).toBe(201);
    const [v] = await versions();
    expect(v!.signature?.keyId).toBe(keyId);
  });

  it('REST: a statement about other bytes is refused and registers nothing', async () => {
    const { res, versions } = await restUpload('rest-other', 'e'.repeat(64));
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(await versions()).toEqual([]);
  });

  it('REST: signature headers must come all three, checked before a byte is stored', async () => {
    const ref = await workflowWith([]);
    const res = await reg.fetch(`/internal/bundles?workflow=${encodeURIComponent(ref)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/gzip', 'x-bundle-signature': 'AAAA' },
      body: Buffer.from('not read'),
    });
    expect(res.status).toBe(400);
    expect((await res.json()).error.message).toContain('signature headers');
    const c = reg.client();
    expect(await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }))).toEqual([]);
  });
});

describe('policy at release', () => {
  afterAll(() => policy('off'));

  it('enforce: activating an unsigned version is refused, naming what is missing; nothing changes', async () => {
    const ref = await workflowWith([true, false]);
    await activate(ref, 1);
    await policy('enforce');
    const before = await history(ref);
    const err = await failure(activate(ref, 2));
    expect(err.code).toBe('PRECONDITION_FAILED');
    expect(err.message).toContain('version 2 of');
    expect(err.message).toContain('is unsigned, and tenant "acme" enforces signatures');
    expect(err.hint).toContain('swarm sign');
    expect(await history(ref)).toEqual(before);
    const c = reg.client();
    const canary = await failure(c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight: 10 })));
    expect(canary.code).toBe('PRECONDITION_FAILED');
    await policy('off');
  });

  it('enforce: signing the version with `keys.sign` lets it be activated', async () => {
    const ref = await workflowWith([false]);
    await policy('enforce');
    const c = reg.client();
    const [v] = await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }));
    const s = signStatement(ci.privateKey, { tenant: 'acme', workflow: ref.split('/')[1]!, bundleHash: v!.bundleHash });
    await c.call(() => c.trpc.keys.sign.mutate({ workflow: ref, version: 1, ...s }));
    expect((await activate(ref, 1)).active).toBe(true);
    await policy('off');
  });

  it('enforce: rollback to an unsigned version is refused', async () => {
    const ref = await workflowWith([false, true]);
    await activate(ref, 1);
    await activate(ref, 2);
    await policy('enforce');
    const c = reg.client();
    const err = await failure(c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref })));
    expect(err.code).toBe('PRECONDITION_FAILED');
    await policy('off');
  });

  it('warn: allowed, recorded in the history, and the listing marks it unsigned', async () => {
    const ref = await workflowWith([false]);
    await policy('warn');
    await activate(ref, 1);
    const [h] = await history(ref);
    expect(h).toMatchObject({ kind: 'activate', toVersion: 1, signatureWarning: 'unsigned' });
    const c = reg.client();
    const [v] = await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }));
    expect(v!.signature).toBeNull();
    await policy('off');
  });
});

describe('re-delegation (keys.add of a key the tenant has)', () => {
  it('a longer delegation replaces the old one (and reaches the cached release); a shorter one does not; a revoked key stays revoked', async () => {
    const c = reg.client();
    const key = pair();
    const first = delegate('acme', key, root, new Date(Date.now() + 10 * DAY));
    const added = await c.call(() => c.trpc.keys.add.mutate({ tenant: 'acme', delegation: first }));
    expect(added).toMatchObject({ created: true, renewed: false });
    const name = `wf${++n}`;
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
    const ref = `acme/${name}`;
    const file = await bundleOf(path.join(work, `${name}-1`), { 'swarm.json': JSON.stringify({ entrypoint: ['true'] }) });
    await c.uploadBundle(file, { workflow: ref, signingKey: key.privateKey, activate: true });
    // Cached with the first delegation.
    const before = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} }));
    expect(before.metadata.signing?.delegation).toEqual(first);

    const longer = delegate('acme', key, root, new Date(Date.now() + 100 * DAY));
    const renewed = await c.call(() => c.trpc.keys.add.mutate({ tenant: 'acme', delegation: longer }));
    expect(renewed).toMatchObject({ created: false, renewed: true });
    expect(Date.parse(renewed.key.notAfter)).toBeGreaterThan(Date.now() + 99 * DAY);
    const after = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} }));
    expect(after.metadata.signing?.delegation).toEqual(longer);

    const shorter = delegate('acme', key, root, new Date(Date.now() + 20 * DAY));
    const kept = await c.call(() => c.trpc.keys.add.mutate({ tenant: 'acme', delegation: shorter }));
    expect(kept).toMatchObject({ created: false, renewed: false });
    expect(kept.key.notAfter).toBe(renewed.key.notAfter);

    await c.call(() => c.trpc.keys.revoke.mutate({ tenant: 'acme', keyId: added.key.keyId }));
    const revoked = await c.call(() =>
      c.trpc.keys.add.mutate({ tenant: 'acme', delegation: delegate('acme', key, root, new Date(Date.now() + 200 * DAY)) }),
    );
    expect(revoked).toMatchObject({ created: false, renewed: false });
    expect(revoked.key.revokedAt).not.toBeNull();
    expect(revoked.key.notAfter).toBe(renewed.key.notAfter);
  });
});

describe('spawn under enforce', () => {
  it('a version whose key delegation has expired since its activation counts as unsigned: spawn and resolve refused', async () => {
    const c = reg.client();
    const key = pair();
    await c.call(() => c.trpc.keys.add.mutate({ tenant: 'acme', delegation: delegate('acme', key) }));
    const name = `wf${++n}`;
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
    const ref = `acme/${name}`;
    const file = await bundleOf(path.join(work, `${name}-1`), { 'swarm.json': JSON.stringify({ entrypoint: ['true'] }) });
    await c.uploadBundle(file, { workflow: ref, signingKey: key.privateKey, activate: true });
    await policy('enforce');
    try {
      await c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} }));
      // Time passes: the delegation ends (set in the database; the registry refuses adding an expired one).
      const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
      try {
        await sql`update tenant_signing_keys set not_after = now() - interval '1 minute' where key_id = ${createHash('sha256')
          .update(key.publicKey.export({ type: 'spki', format: 'der' }))
          .digest('hex')}`;
        await sql`select pg_notify('swarm_release', w.id::text) from workflows w where w.name = ${name}`;
      } finally {
        await sql.end();
      }
      const spawn = await failure(c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} })));
      expect(spawn.code).toBe('PRECONDITION_FAILED');
      expect(spawn.message).toMatch(/whose delegation expired .* \(treated as unsigned\), and tenant "acme" enforces signatures/);
      expect((await failure(c.resolveActive(ref))).code).toBe('PRECONDITION_FAILED');
    } finally {
      await policy('off');
    }
  });
});

describe('a spawn refused after its insert (the release changed under the cache)', () => {
  /**
   * A workflow with signed version 1 active and unsigned version 2, under enforce: `body` gets
   * SQL, the count of the workflow's executions and the client; the release cache hears of
   * SQL changes only after it.
   */
  async function underEnforce(
    body: (t: {
      sql: postgres.Sql;
      name: string;
      ref: string;
      count: () => Promise<number>;
      c: ReturnType<typeof reg.client>;
    }) => Promise<void>,
  ) {
    const ref = await workflowWith([true, false]);
    await activate(ref, 1);
    await policy('enforce');
    const name = ref.split('/')[1]!;
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    const count = async () =>
      Number(
        (await sql`select count(*)::int as n from executions e join workflows w on w.id = e.workflow_id where w.name = ${name}`)[0]!.n,
      );
    try {
      await body({ sql, name, ref, count, c: reg.client() });
    } finally {
      await sql`select pg_notify('swarm_release', w.id::text) from workflows w where w.name = ${name}`;
      await sql.end();
      await policy('off');
    }
  }

  it('leaves no pending execution behind', () =>
    underEnforce(async ({ sql, name, ref, count, c }) => {
      // Caches the release: version 1, signed.
      await c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} }));
      expect(await count()).toBe(1);
      // The release changes without the cache hearing of it: the insert picks unsigned version 2.
      await sql`update workflows w set active_version_id = v.id from workflow_versions v where w.name = ${name} and v.workflow_id = w.id and v.version = 2`;
      const err = await failure(c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} })));
      expect(err.code).toBe('PRECONDITION_FAILED');
      expect(err.message).toContain('is unsigned');
      expect(await count()).toBe(1);
    }));

  it('takes back every execution of a spawnMany call, not only the refused one', () =>
    underEnforce(async ({ sql, name, ref, count, c }) => {
      // Caches the release: version 1, signed.
      await c.call(() => c.trpc.executions.spawnMany.mutate({ workflow: ref, count: 2, secrets: {} }));
      expect(await count()).toBe(2);
      // The release changes without the cache hearing of it: unsigned version 2 becomes a 50% canary, so
      // of 20 spawns about half get version 2 (refused after the insert) and half signed version 1 (allowed).
      await sql`update workflows w set canary_version_id = v.id, canary_weight = 50 from workflow_versions v where w.name = ${name} and v.workflow_id = w.id and v.version = 2`;
      const err = await failure(c.call(() => c.trpc.executions.spawnMany.mutate({ workflow: ref, count: 20, secrets: {} })));
      expect(err.code).toBe('PRECONDITION_FAILED');
      expect(err.message).toContain('is unsigned');
      expect(await count()).toBe(2);
    }));
});

describe('resolving (versions.active)', () => {
  it('an unsigned active version is not served under enforce, nor its bundle URL', async () => {
    const ref = await workflowWith([true, false]);
    await policy('off');
    await activate(ref, 2);
    const c = reg.client();
    expect((await c.resolveActive(ref)).signing).toBeUndefined();
    await policy('enforce');
    try {
      const err = await failure(c.resolveActive(ref));
      expect(err.code).toBe('PRECONDITION_FAILED');
      expect(err.message).toContain('is unsigned, and tenant "acme" enforces signatures');
    } finally {
      await policy('off');
    }
  });
});

describe('the replica that changes a policy or a key answers with the change at once', () => {
  // Other replicas hear of a change by notification (test/release-cache.test.ts). The one
  // that made it drops the tenant's cached releases as the change commits, so its very next
  // answer has the change. To show that without racing the notification, the services run
  // here on the registry's database and store with caches of their own that are live but
  // hear no notification at all.
  const admin: Principal = { tokenId: null, name: 'test', scope: 'admin', tenantId: null };
  let deps: Deps;
  beforeAll(() => {
    const caches = createCaches(600);
    caches.releases.setLive(true);
    caches.principals.setLive(true);
    deps = { ...reg.deps, caches };
  });
  const resolve = (ref: string) => resolveActive(deps, admin, { workflow: ref });
  const refusal = (ref: string) =>
    resolve(ref).then(
      () => 'served',
      (e: RegistryError) => `${e.code}: ${e.message}`,
    );

  it('policy set, key added, key revoked: each answered by the next resolve', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'initech' }));
    const push = async (name: string, signingKey?: KeyObject) => {
      await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'initech', name }));
      const file = await bundleOf(path.join(work, `initech-${name}`), { 'swarm.json': JSON.stringify({ entrypoint: ['true'] }) });
      await c.uploadBundle(file, { workflow: `initech/${name}`, activate: true, ...(signingKey ? { signingKey } : {}) });
      return `initech/${name}`;
    };
    const unsigned = await push('unsigned');
    const id = (await resolve(unsigned)).workflowId;
    expect(deps.caches.releases.peek(id)).toBeDefined();

    await changeSignaturePolicy(deps, admin, { tenant: 'initech', signatures: 'enforce' });
    expect(deps.caches.releases.peek(id)).toBeUndefined();
    expect(await refusal(unsigned)).toMatch(/^PRECONDITION_FAILED: version 1 of initech\/unsigned is unsigned/);
    await changeSignaturePolicy(deps, admin, { tenant: 'initech', signatures: 'warn' });
    expect(await refusal(unsigned)).toBe('served');

    const key = pair();
    const { key: added } = await addSigningKey(deps, admin, { tenant: 'initech', delegation: delegate('initech', key) });
    expect(deps.caches.releases.peek(id), "adding a key drops the tenant's entries").toBeUndefined();

    const signed = await push('signed', key.privateKey);
    expect((await resolve(signed)).signing?.keyId).toBe(added.keyId);
    await revokeKey(deps, admin, { tenant: 'initech', keyId: added.keyId });
    expect(await refusal(signed)).toMatch(/^PRECONDITION_FAILED: version 1 of initech\/signed is signed only by revoked key/);
    await changeSignaturePolicy(deps, admin, { tenant: 'initech', signatures: 'off' });
    expect(await refusal(signed)).toBe('served');
  });
});

describe('revocation', () => {
  it('a revoked key: activation refused under enforce, spawn refused under warn, allowed under off', async () => {
    const key = pair();
    const c = reg.client();
    const added = await c.call(() => c.trpc.keys.add.mutate({ tenant: 'acme', delegation: delegate('acme', key) }));
    const name = `wf${++n}`;
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
    const ref = `acme/${name}`;
    for (const i of [1, 2]) {
      const file = await bundleOf(path.join(work, `${name}-${i}`), { 'swarm.json': JSON.stringify({ entrypoint: ['true', String(i)] }) });
      await c.uploadBundle(file, { workflow: ref, signingKey: key.privateKey });
    }
    await activate(ref, 1);
    // A spawn before the revocation puts the release (with its signing state) in the release cache.
    await policy('warn');
    const before = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} }));
    expect(before.metadata.signing?.keyId).toBe(added.key.keyId);
    await c.call(() => c.trpc.keys.revoke.mutate({ tenant: 'acme', keyId: added.key.keyId }));
    const [v] = await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }));
    expect(v!.signature).toMatchObject({ keyRevoked: true });
    // The revocation alone dropped the cached release: the next spawn sees it.
    const spawn = await failure(c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} })));
    expect(spawn.code).toBe('PRECONDITION_FAILED');
    expect(spawn.message).toContain('signed only by revoked key');
    // An agent resolving the workflow itself gets the same answer: the version is not served.
    const resolved = await failure(c.resolveActive(ref));
    expect(resolved.code).toBe('PRECONDITION_FAILED');
    expect(resolved.message).toContain('signed only by revoked key');

    await policy('enforce');
    const err = await failure(activate(ref, 2));
    expect(err.message).toContain(`is signed only by revoked key ${added.key.keyId}`);

    await policy('off');
    const ok = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref, secrets: {} }));
    expect(ok.metadata.signing?.keyId).toBe(added.key.keyId);
  });
});

describe('the VM (process driver) with a trust root', () => {
  it('a signed bundle boots', async () => {
    const ref = await workflowWith([true], 'echo SIGNED-RAN');
    await activate(ref, 1);
    let out = '';
    const r = await spawnWorkflow(reg.client(), ref, { agentPath, trustRoot: rootFile, onOutput: (l) => (out += `${l}\n`) });
    expect(r.exitCode, out).toBe(0);
    expect(out).toContain('SIGNED-RAN 1');
    expect(out).toContain('signature verified');
  });

  it('an agent resolving the workflow itself verifies the signature the registry returns with the active version', async () => {
    const ref = await workflowWith([true, false], 'echo RESOLVED-RAN');
    await activate(ref, 1);
    const run = async () => {
      let out = '';
      const r = await runVm(
        { workflow: ref, apiUrl: reg.url, secrets: {} },
        { agentPath, trustRoot: rootFile, agentEnv: { SWARM_TOKEN: reg.adminToken }, onOutput: (l) => (out += `${l}\n`) },
      );
      return { ...r, out };
    };
    const signed = await run();
    expect(signed.exitCode, signed.out).toBe(0);
    expect(signed.out).toContain('RESOLVED-RAN 1');
    expect(signed.out).toContain('signature verified');
    await activate(ref, 2);
    const unsigned = await run();
    expect(unsigned.exitCode, unsigned.out).toBe(67);
    expect(unsigned.out).toContain('is unsigned');
    expect(unsigned.out).not.toContain('RESOLVED-RAN 2');
  });

  it('a version inserted and activated by SQL (a compromised registry): the VM refuses, exit 67, nothing run', async () => {
    const ref = await workflowWith([true, false], 'echo PLANTED-RAN');
    await activate(ref, 1);
    // The attacker writes the database directly: version 2's unsigned bundle, with version 1's signature copied over, made active.
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    try {
      const name = ref.split('/')[1]!;
      await sql`
        update workflow_versions v2 set signature = v1.signature, signature_statement = v1.signature_statement, signing_key_id = v1.signing_key_id
        from workflow_versions v1, workflows w
        where w.name = ${name} and v1.workflow_id = w.id and v2.workflow_id = w.id and v1.version = 1 and v2.version = 2`;
      await sql`update workflows w set active_version_id = v.id from workflow_versions v where w.name = ${name} and v.workflow_id = w.id and v.version = 2`;
      await sql`select pg_notify('swarm_release', w.id::text) from workflows w where w.name = ${name}`;
    } finally {
      await sql.end();
    }
    let out = '';
    const c = reg.client();
    let executionId = '';
    const r = await spawnWorkflow(c, ref, {
      agentPath,
      trustRoot: rootFile,
      onOutput: (l) => (out += `${l}\n`),
      onSpawned: (e) => (executionId = e.id),
    });
    expect(r.exitCode, out).toBe(67);
    expect(out).toContain('wrong_bundle');
    expect(out).not.toContain('PLANTED-RAN');
    const events = [];
    for await (const e of c.executionEvents(executionId)) events.push(e);
    expect(events.find((e) => e.type === 'failed')?.data).toMatchObject({ reason: 'untrusted' });
    expect(events.map((e) => e.type)).not.toContain('unpacked');
    expect(await c.call(() => c.trpc.executions.get.query({ id: executionId }))).toMatchObject({
      status: 'failed',
      failureReason: 'untrusted',
    });
  });

  it('the registry answering with another tenant’s validly signed version: exit 67', async () => {
    // globex signs its own workflow properly; the registry is made to serve it for acme's.
    const c = reg.client();
    const gkey = pair();
    await c.call(() => c.trpc.keys.add.mutate({ tenant: 'globex', delegation: delegate('globex', gkey) }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'globex', name: 'app' }));
    const file = await bundleOf(path.join(work, 'globex-app'), {
      'swarm.json': JSON.stringify({ entrypoint: ['sh', '-c', 'echo GLOBEX-RAN'] }),
    });
    await c.uploadBundle(file, { workflow: 'globex/app', signingKey: gkey.privateKey, activate: true });
    const ref = await workflowWith([true]);
    await activate(ref, 1);
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    try {
      const name = ref.split('/')[1]!;
      // acme's workflow now points at a copy of globex's signed version (same bundle, same signature).
      await sql`
        insert into workflow_versions (workflow_id, version, bundle_hash, created_by, signature, signature_statement, signing_key_id)
        select w.id, 2, g.bundle_hash, 'attacker', g.signature, g.signature_statement, g.signing_key_id
        from workflows w, workflow_versions g join workflows gw on gw.id = g.workflow_id and gw.name = 'app'
        join tenants gt on gt.id = gw.tenant_id and gt.slug = 'globex'
        where w.name = ${name}`;
      await sql`insert into tenant_signing_keys (tenant_id, key_id, public_key, delegation, not_after, created_by)
        select a.id, k.key_id, k.public_key, k.delegation, k.not_after, 'attacker' from tenant_signing_keys k
        join tenants g on g.id = k.tenant_id and g.slug = 'globex', tenants a where a.slug = 'acme'
        on conflict do nothing`;
      await sql`update workflows w set active_version_id = v.id from workflow_versions v where w.name = ${name} and v.workflow_id = w.id and v.version = 2`;
      await sql`select pg_notify('swarm_release', w.id::text) from workflows w where w.name = ${name}`;
    } finally {
      await sql.end();
    }
    let out = '';
    const r = await spawnWorkflow(c, ref, { agentPath, trustRoot: rootFile, onOutput: (l) => (out += `${l}\n`) });
    expect(r.exitCode, out).toBe(67);
    expect(out).toContain('wrong_tenant');
    expect(out).not.toContain('GLOBEX-RAN');
  });
});

/** A loopback proxy in front of the registry that rewrites the metadata of every executions.spawn answer. */
async function rewritingProxy(target: string, rewrite: (metadata: Record<string, unknown>) => void) {
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        if (!req.url?.includes('executions.spawn')) {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString());
          if (body.result?.data?.metadata) rewrite(body.result.data.metadata);
          const text = JSON.stringify(body);
          const { 'content-length': _, 'transfer-encoding': __, ...headers } = r.headers;
          res.writeHead(r.statusCode ?? 502, { ...headers, 'content-length': Buffer.byteLength(text) });
          res.end(text);
        });
      },
    );
    req.pipe(out);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

describe('the driver takes from the registry only what the registry alone knows', () => {
  it('a registry injecting a runtime command and secrets into a signed spawn answer: the VM runs only what the orchestrator asked for', async () => {
    // The secret's length, not its value: the agent masks every secret value in the output (#16).
    const ref = await workflowWith([true], 'echo SIGNED-RAN len=${#MINE} $INJECTED_SECRET');
    await activate(ref, 1);
    const marker = path.join(work, 'node-options-ran');
    await fs.writeFile(path.join(work, 'inject.cjs'), `require('fs').writeFileSync(${JSON.stringify(marker)}, 'x')`);
    const proxy = await rewritingProxy(reg.url, (m) => {
      m.runtime = { command: ['sh', '-c', 'echo INJECTED-RAN'] };
      m.secrets = {
        ...(m.secrets as object),
        INJECTED_SECRET: 'leak',
        MINE: 'theirs',
        NODE_OPTIONS: `--require ${path.join(work, 'inject.cjs')}`,
      };
    });
    let out = '';
    try {
      const c = createSwarmClient({ url: proxy.url, token: reg.adminToken });
      const r = await spawnWorkflow(c, ref, {
        agentPath,
        trustRoot: rootFile,
        secrets: { MINE: 'mine' },
        onOutput: (l) => (out += `${l}\n`),
      });
      expect(r.exitCode, out).toBe(0);
    } finally {
      await proxy.close();
    }
    expect(out).toContain('signature verified');
    expect(out).toContain('SIGNED-RAN len=4 1'); // 4: "mine", not the injected "theirs"
    expect(out).not.toContain('INJECTED-RAN');
    expect(out).not.toContain('leak');
    await expect(fs.access(marker)).rejects.toThrow();
  });

  it('spawn by workflow id under a trust root: the registry-named workflow is dropped, the VM refuses (67, "spawn by tenant/name")', async () => {
    const ref = await workflowWith([true], 'echo BY-ID-RAN');
    await activate(ref, 1);
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    let id: string;
    try {
      [{ id }] = (await sql`select id from workflows where name = ${ref.split('/')[1]!}`) as unknown as [{ id: string }];
    } finally {
      await sql.end();
    }
    // The registry also names a workflow in its answer: it must not become the expected one.
    const proxy = await rewritingProxy(reg.url, (m) => {
      m.workflow = ref;
    });
    let out = '';
    try {
      const c = createSwarmClient({ url: proxy.url, token: reg.adminToken });
      const r = await spawnWorkflow(c, id, { agentPath, trustRoot: rootFile, onOutput: (l) => (out += `${l}\n`) });
      expect(r.exitCode, out).toBe(67);
    } finally {
      await proxy.close();
    }
    expect(out).toContain('spawn by tenant/name');
    expect(out).not.toContain('BY-ID-RAN');
  });
});

/** A loopback proxy in front of the registry that keeps every request's head and body. */
async function recordingProxy(target: string) {
  const seen: Buffer[] = [];
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    seen.push(Buffer.from(`${req.method} ${req.url}\n${JSON.stringify(req.headers)}\n`));
    const out = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    req.on('data', (chunk: Buffer) => seen.push(chunk));
    req.pipe(out);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen: () => Buffer.concat(seen),
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

describe('the private key', () => {
  it('never appears in the database, the logs or a request', async () => {
    // Everything signing sends, through a proxy that records it: a signed push, and swarm sign's call.
    const proxy = await recordingProxy(reg.url);
    try {
      const c = createSwarmClient({ url: proxy.url, token: reg.adminToken });
      const name = `wf${++n}`;
      await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
      const file = await bundleOf(path.join(work, `${name}-proxy`), { 'main.sh': 'echo proxied\n' });
      await c.uploadBundle(file, { workflow: `acme/${name}`, signingKey: ci.privateKey });
      const again = await bundleOf(path.join(work, `${name}-proxy2`), { 'main.sh': 'echo proxied again\n' });
      await c.uploadBundle(again, { workflow: `acme/${name}` });
      const [v] = await c.call(() => c.trpc.workflows.versions.query({ workflow: `acme/${name}` }));
      const s = signStatement(ci.privateKey, { tenant: 'acme', workflow: name, bundleHash: v!.bundleHash });
      await c.call(() => c.trpc.keys.sign.mutate({ workflow: `acme/${name}`, version: v!.version, ...s }));
    } finally {
      await proxy.close();
    }
    const sent = proxy.seen().toString('latin1');
    expect(sent).toContain('x-bundle-signature');
    const body = ciPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
    const raw = ci.privateKey.export({ type: 'pkcs8', format: 'der' }).subarray(-32);
    const needles = [body, raw.toString('base64').replace(/=+$/, ''), raw.toString('hex')];
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    let dump = '';
    try {
      for (const t of ['tenant_signing_keys', 'workflow_versions', 'workflow_activations', 'tenants', 'execution_events', 'executions']) {
        const rows = await sql.unsafe(`select * from ${t}`);
        dump += JSON.stringify(rows);
      }
    } finally {
      await sql.end();
    }
    const logs = reg.logs.join('\n');
    expect(dump.length).toBeGreaterThan(1000);
    for (const needle of needles) {
      expect(dump).not.toContain(needle);
      expect(logs).not.toContain(needle);
      expect(sent).not.toContain(needle);
    }
  });
});
