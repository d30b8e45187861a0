/**
 * Spawns by group commit and fan-out in one call: concurrent spawns share one statement
 * (one transaction: the same xmin) and each caller still gets its own execution and token;
 * a row the database refuses fails only its own caller; canary routing stays by bucket;
 * executions.spawnMany makes up to 1,000 executions in one statement, and refuses each kind
 * of bad input without creating anything.
 */
import { createHash } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SPAWN_MANY_MAX } from '../packages/sdk/src/contract/index.js';
import type { SwarmError } from '../packages/sdk/src/index.js';
import { generateAgentToken } from '../packages/server/src/services/auth.js';
import { routingBucket } from '../packages/server/src/services/releases.js';
import { SpawnBatcher } from '../packages/server/src/services/spawn-batcher.js';
import { type TestRegistry, bundleBytes, startTestRegistry } from './support/registry.js';

let reg: TestRegistry;
let sql: postgres.Sql;
let workflowId: string;
let orch: ReturnType<TestRegistry['client']>;

const executionCount = async () => Number((await sql`select count(*)::int as n from executions`)[0]!.n);
const transactionsOf = async (ids: string[]) =>
  Number((await sql`select count(distinct xmin::text)::int as n from executions where id = any(${ids}::uuid[])`)[0]!.n);
const refused = async (p: Promise<unknown>) => {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as SwarmError | undefined;
  expect(err, 'expected the call to be refused').toBeDefined();
  return err!;
};

beforeAll(async () => {
  reg = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn' } });
  sql = postgres(reg.deps.config.databaseUrl!, { max: 2, onnotice: () => {} });
  const admin = reg.client();
  await admin.call(() => admin.trpc.tenants.create.mutate({ slug: 'fan' }));
  workflowId = (await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'fan', name: 'job' }))).id;
  await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'fan', name: 'idle' }));
  for (const seed of ['v1', 'v2']) {
    const res = await reg.fetch('/internal/bundles?workflow=fan/job', {
      method: 'POST',
      headers: { 'content-type': 'application/gzip' },
      body: bundleBytes(seed),
    });
    expect(res.status).toBe(201);
  }
  await admin.call(() => admin.trpc.versions.activate.mutate({ workflow: 'fan/job', version: 1 }));
  await admin.call(() => admin.trpc.releases.setCanary.mutate({ workflow: 'fan/job', version: 2, weight: 50 }));
  const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'fan' }));
  orch = reg.client(token);
}, 120_000);
afterAll(async () => {
  await sql?.end();
  await reg?.close();
});

describe('group commit', () => {
  it('gives each of 60 racing spawns its own execution and token; canary routing stays by bucket', async () => {
    const keys = Array.from({ length: 60 }, (_, i) => `customer-${i}`);
    const spawned = await Promise.all(
      keys.map((routingKey) => orch.call(() => orch.trpc.executions.spawn.mutate({ workflow: 'fan/job', routingKey }))),
    );
    expect(new Set(spawned.map((s) => s.execution.id)).size).toBe(60);
    expect(new Set(spawned.map((s) => s.metadata.execution!.agentToken)).size).toBe(60);
    for (const [i, s] of spawned.entries()) {
      expect(s.execution.routingKey).toBe(keys[i]);
      const canary = routingBucket(workflowId, keys[i]!) < 50;
      expect(s.execution).toMatchObject({ versionReason: canary ? 'canary' : 'active', version: canary ? 2 : 1 });
    }
    // Each token is stored for its own row.
    const rows = await sql`select id, agent_token_hash from executions where id = any(${spawned.map((s) => s.execution.id)}::uuid[])`;
    const hashes = new Map(rows.map((r) => [r.id as string, r.agent_token_hash as string]));
    for (const s of spawned) expect(hashes.get(s.execution.id)).toBe(generateAgentTokenHash(s.metadata.execution!.agentToken));
  });

  it('commits spawns queued together as one transaction', async () => {
    const batcher = new SpawnBatcher(reg.deps.db);
    const items = Array.from({ length: 25 }, () => ({
      workflowId,
      bucket: 99,
      routingKey: undefined,
      agentTokenHash: generateAgentToken('bootstrap').hash,
      agentTokenTtlSeconds: 60,
      spawnedBy: 'batch-test',
      timeoutSeconds: undefined,
      outputMaxBytes: 4096,
    }));
    const spawned = await Promise.all(items.map((i) => batcher.spawn(i)));
    expect(spawned.every((s) => s?.row.versionReason === 'active')).toBe(true);
    expect(batcher.stats).toMatchObject({ batches: 1, spawns: 25 });
    expect(await transactionsOf(spawned.map((s) => s!.row.id))).toBe(1);
  });

  it("batches per workflow: a workflow locked by a release change does not hold up another's spawns", async () => {
    const admin = reg.client();
    const other = await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'fan', name: 'other' }));
    const up = await reg.fetch('/internal/bundles?workflow=fan/other&activate=true', {
      method: 'POST',
      headers: { 'content-type': 'application/gzip' },
      body: bundleBytes('other'),
    });
    expect(up.status).toBe(201);
    const batcher = new SpawnBatcher(reg.deps.db);
    const item = (wf: string) => ({
      workflowId: wf,
      bucket: 99,
      routingKey: undefined,
      agentTokenHash: generateAgentToken('bootstrap').hash,
      agentTokenTtlSeconds: 60,
      spawnedBy: 'lanes',
      timeoutSeconds: undefined,
      outputMaxBytes: 4096,
    });
    let blocked: Promise<unknown> | undefined;
    await sql.begin(async (tx) => {
      // What a release change or gc holds while it works.
      await tx`select id from workflows where id = ${workflowId} for update`;
      let settled = false;
      blocked = batcher.spawn(item(workflowId)).finally(() => {
        settled = true;
      });
      const free = await batcher.spawn(item(other.id));
      expect(free?.row.workflowId).toBe(other.id);
      expect(settled).toBe(false);
    });
    expect(((await blocked) as { row: { workflowId: string } }).row.workflowId).toBe(workflowId);
  });

  it('fails only the item the database refuses; the others in its batch are spawned', async () => {
    const batcher = new SpawnBatcher(reg.deps.db);
    const item = (spawnedBy: string) => ({
      workflowId,
      bucket: 99,
      routingKey: undefined,
      agentTokenHash: generateAgentToken('bootstrap').hash,
      agentTokenTtlSeconds: 60,
      spawnedBy,
      timeoutSeconds: undefined,
      outputMaxBytes: 4096,
    });
    const before = await executionCount();
    // A NUL byte cannot be stored in text: the batch statement fails as a whole.
    const results = await Promise.allSettled(
      [item('ok-1'), item('bad\u0000name'), item('ok-2'), item('ok-3')].map((i) => batcher.spawn(i)),
    );
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(batcher.stats.retriedSingly).toBe(4);
    expect(await executionCount()).toBe(before + 3);
  });

  it('answers undefined (no row) for a workflow without an active version, beside spawns that succeed', async () => {
    const idle = await reg.deps.caches.releases.lookup(reg.deps.db, 'fan/idle');
    const batcher = new SpawnBatcher(reg.deps.db);
    const base = {
      bucket: 99,
      routingKey: undefined,
      agentTokenTtlSeconds: 60,
      spawnedBy: 'mixed',
      timeoutSeconds: undefined,
      outputMaxBytes: 4096,
    };
    const [a, b] = await Promise.all([
      batcher.spawn({ ...base, workflowId, agentTokenHash: generateAgentToken('bootstrap').hash }),
      batcher.spawn({ ...base, workflowId: idle!.workflow.id, agentTokenHash: generateAgentToken('bootstrap').hash }),
    ]);
    expect(a?.row.workflowId).toBe(workflowId);
    expect(b).toBeUndefined();
  });

  for (const [what, routingKey] of [
    ['a NUL', 'a\u0000b'],
    ['a control character', 'a\u001bb'],
    ['a lone surrogate', 'a\ud800b'],
  ]) {
    it(`refuses a routing key with ${what} (400), spawning nothing`, async () => {
      const before = await executionCount();
      const err = await refused(orch.call(() => orch.trpc.executions.spawn.mutate({ workflow: 'fan/job', routingKey })));
      expect(err.code).toBe('BAD_REQUEST');
      expect(err.message).toMatch(/routingKey: control characters and lone surrogates are not allowed/);
      expect(await executionCount()).toBe(before);
    });
  }
});

const generateAgentTokenHash = (token: string) => createHash('sha256').update(token).digest('hex');

describe('executions.spawnMany', () => {
  it('makes 100 executions in one statement, each with its own token and metadata', async () => {
    const { spawned } = await orch.call(() =>
      orch.trpc.executions.spawnMany.mutate({ workflow: 'fan/job', count: 100, secrets: { API_KEY: 'k' }, runtime: { command: ['true'] } }),
    );
    expect(spawned).toHaveLength(100);
    expect(new Set(spawned.map((s) => s.execution.id)).size).toBe(100);
    expect(new Set(spawned.map((s) => s.metadata.execution!.agentToken)).size).toBe(100);
    for (const s of spawned) {
      expect(s.metadata.secrets).toEqual({ API_KEY: 'k' });
      expect(s.metadata.runtime).toEqual({ command: ['true'] });
      expect(s.metadata.bundle?.hash).toHaveLength(64);
    }
    expect(await transactionsOf(spawned.map((s) => s.execution.id))).toBe(1);
  });

  it('takes items: routing keys pick by bucket, item secrets merge over the shared ones, an item runtime replaces it', async () => {
    const items = [
      { routingKey: 'tenant-a' },
      { routingKey: 'tenant-b', secrets: { EXTRA: 'x', API_KEY: 'override' } },
      { runtime: { command: ['echo', 'hi'] } },
    ];
    const { spawned } = await orch.call(() =>
      orch.trpc.executions.spawnMany.mutate({ workflow: 'fan/job', items, secrets: { API_KEY: 'shared' }, runtime: { command: ['true'] } }),
    );
    expect(spawned.map((s) => s.execution.routingKey)).toEqual(['tenant-a', 'tenant-b', null]);
    for (const [i, key] of ['tenant-a', 'tenant-b'].entries()) {
      expect(spawned[i]!.execution.versionReason).toBe(routingBucket(workflowId, key) < 50 ? 'canary' : 'active');
    }
    expect(spawned[0]!.metadata.secrets).toEqual({ API_KEY: 'shared' });
    expect(spawned[1]!.metadata.secrets).toEqual({ API_KEY: 'override', EXTRA: 'x' });
    expect(spawned[2]!.metadata.runtime).toEqual({ command: ['echo', 'hi'] });
    expect(spawned[0]!.metadata.runtime).toEqual({ command: ['true'] });
  });

  it(`makes ${SPAWN_MANY_MAX} executions in one call`, async () => {
    const { spawned } = await orch.call(() => orch.trpc.executions.spawnMany.mutate({ workflow: 'fan/job', count: SPAWN_MANY_MAX }));
    expect(spawned).toHaveLength(SPAWN_MANY_MAX);
    expect(await transactionsOf(spawned.map((s) => s.execution.id))).toBe(1);
  });

  const badInputs: [string, Record<string, unknown>, RegExp][] = [
    ['count 0', { count: 0 }, /count: Too small/],
    [`count ${SPAWN_MANY_MAX + 1}`, { count: SPAWN_MANY_MAX + 1 }, /count: Too big/],
    ['a fractional count', { count: 2.5 }, /count: .*expected int/],
    ['no count and no items', {}, /exactly one of count or items/],
    ['both count and items', { count: 2, items: [{ routingKey: 'a' }] }, /exactly one of count or items/],
    ['an empty item', { items: [{ routingKey: 'a' }, {}] }, /items\.1: an item carries its routingKey/],
    ['an empty items list', { items: [] }, /items: Too small/],
    [`${SPAWN_MANY_MAX + 1} items`, { items: Array.from({ length: SPAWN_MANY_MAX + 1 }, () => ({})) }, /items: Too big/],
    ['an item with an unknown field', { items: [{ routingKey: 'a', workflow: 'fan/idle' }] }, /items\.0: Unrecognized key: "workflow"/],
    ['an item routing key with a control character', { items: [{ routingKey: 'a\nb' }] }, /items\.0\.routingKey: control characters/],
    ['an item secret with a bad name', { items: [{ secrets: { 'not a name': 'x' } }] }, /items\.0\.secrets/],
    ['an item runtime with an empty command', { items: [{ runtime: { command: [] } }] }, /items\.0\.runtime\.command/],
    ['a bootstrap token lifetime over an hour', { count: 1, bootstrapTokenTtlSeconds: 3601 }, /bootstrapTokenTtlSeconds: Too big/],
  ];
  for (const [what, input, message] of badInputs) {
    it(`refuses ${what} (BAD_REQUEST), creating nothing`, async () => {
      const before = await executionCount();
      const err = await refused(orch.call(() => orch.trpc.executions.spawnMany.mutate({ workflow: 'fan/job', ...input } as never)));
      expect(err.code).toBe('BAD_REQUEST');
      expect(err.message).toMatch(message);
      expect(await executionCount()).toBe(before);
    });
  }

  it('refuses a workflow without an active version (NOT_FOUND with a hint), creating nothing', async () => {
    const before = await executionCount();
    const err = await refused(orch.call(() => orch.trpc.executions.spawnMany.mutate({ workflow: 'fan/idle', count: 3 })));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.hint).toMatch(/swarm activate fan\/idle/);
    expect(await executionCount()).toBe(before);
  });

  it('refuses a tenant token (FORBIDDEN), creating nothing', async () => {
    const admin = reg.client();
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'tenant:fan', name: 'tenant' }));
    const tenant = reg.client(token);
    const before = await executionCount();
    const err = await refused(tenant.call(() => tenant.trpc.executions.spawnMany.mutate({ workflow: 'fan/job', count: 2 })));
    expect(err.code).toBe('FORBIDDEN');
    expect(await executionCount()).toBe(before);
  });
});
