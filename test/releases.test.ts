/**
 * Release controls against the real PostgreSQL and S3 server: rollback (one step and
 * further back), canary with weighted and routing-key choice, promote, the history that
 * records all of it, and diff between two versions' bundles read from the store.
 * Every refused request leaves the release and its history as they were.
 */
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure } from './support/failure.js';
import { chooseRelease, rollbackTarget, routingBucket } from '../packages/server/src/services/releases.js';
import { bundleOf } from './support/bundles.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

let reg: TestRegistry;
let work: string;
beforeAll(async () => {
  reg = await startTestRegistry({ storage: 's3' });
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-releases-'));
  const c = reg.client();
  await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
  await c.call(() => c.trpc.tenants.create.mutate({ slug: 'other' }));
});
afterAll(async () => {
  await reg?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** A workflow with `n` versions whose bundles hold `files(i)`; none active. */
async function workflowWithVersions(
  name: string,
  n: number,
  files: (i: number) => Record<string, string> = (i) => ({ 'main.sh': `echo ${name} ${i}\n` }),
) {
  const c = reg.client();
  await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
  const ref = `acme/${name}`;
  for (let i = 1; i <= n; i++) {
    const file = await bundleOf(path.join(work, `${name}-${i}`), files(i));
    const r = await c.uploadBundle(file, { workflow: ref, message: `v${i}` });
    expect(r.version).toBe(i);
  }
  return ref;
}

const activate = (ref: string, version: number) => {
  const c = reg.client();
  return c.call(() => c.trpc.versions.activate.mutate({ workflow: ref, version }));
};
const state = (ref: string) => {
  const c = reg.client();
  return c.call(() => c.trpc.releases.state.query({ workflow: ref }));
};
const history = (ref: string) => {
  const c = reg.client();
  return c.call(() => c.trpc.releases.history.query({ workflow: ref }));
};

/** Asserts `attempt` fails with `code` and leaves the release state and history unchanged. */
async function refusedWithoutChange(ref: string, attempt: () => Promise<unknown>, code: string) {
  const before = { state: await state(ref), history: await history(ref) };
  expect((await failure(attempt())).code).toBe(code);
  expect({ state: await state(ref), history: await history(ref) }).toEqual(before);
}

describe('rollback', () => {
  it('returns to the previously active version, and a second rollback goes one step further back', async () => {
    const ref = await workflowWithVersions('rb', 3);
    const c = reg.client();
    for (const v of [1, 2, 3]) await activate(ref, v);
    expect(await c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref, message: 'v3 is broken' }))).toMatchObject({
      activeVersion: 2,
    });
    expect(await c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref }))).toMatchObject({ activeVersion: 1 });
    const h = await history(ref);
    expect(h.map((e) => [e.kind, e.fromVersion, e.toVersion])).toEqual([
      ['rollback', 2, 1],
      ['rollback', 3, 2],
      ['activate', 2, 3],
      ['activate', 1, 2],
      ['activate', null, 1],
    ]);
    expect(h[1]!).toMatchObject({ message: 'v3 is broken', actor: 'admin (bootstrap)' });
    // Nothing earlier than version 1 was ever active.
    await refusedWithoutChange(ref, () => c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref })), 'PRECONDITION_FAILED');
  });

  it('goes to the version named with --to, and a plain rollback then undoes that', async () => {
    const ref = await workflowWithVersions('rb-to', 3);
    const c = reg.client();
    await activate(ref, 3);
    expect(await c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref, to: 1 }))).toMatchObject({ activeVersion: 1 });
    expect(await c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref }))).toMatchObject({ activeVersion: 3 });
  });

  it('refuses a workflow without an active version', async () => {
    const ref = await workflowWithVersions('rb-none', 1);
    const c = reg.client();
    await refusedWithoutChange(ref, () => c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref })), 'PRECONDITION_FAILED');
  });

  it('refuses --to the version that is already active', async () => {
    const ref = await workflowWithVersions('rb-same', 2);
    await activate(ref, 2);
    const c = reg.client();
    await refusedWithoutChange(ref, () => c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref, to: 2 })), 'PRECONDITION_FAILED');
  });

  it('refuses --to a version that does not exist', async () => {
    const ref = await workflowWithVersions('rb-missing', 2);
    await activate(ref, 2);
    const c = reg.client();
    await refusedWithoutChange(ref, () => c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref, to: 9 })), 'NOT_FOUND');
  });

  it("hides another tenant's workflow and refuses the orchestrator", async () => {
    const ref = await workflowWithVersions('rb-auth', 2);
    await activate(ref, 1);
    await activate(ref, 2);
    const admin = reg.client();
    const other = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'tenant:other' }));
    const orch = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator' }));
    const asOther = reg.client(other.token);
    const asOrch = reg.client(orch.token);
    await refusedWithoutChange(ref, () => asOther.call(() => asOther.trpc.releases.rollback.mutate({ workflow: ref })), 'NOT_FOUND');
    await refusedWithoutChange(ref, () => asOrch.call(() => asOrch.trpc.releases.rollback.mutate({ workflow: ref })), 'FORBIDDEN');
  });

  it('replays the history as a stack (pure function)', () => {
    const h = (kind: 'activate' | 'rollback' | 'promote', to: string) => ({ kind, toVersionId: to });
    expect(rollbackTarget([])).toBeNull();
    expect(rollbackTarget([h('activate', 'a')])).toBeNull();
    expect(rollbackTarget([h('activate', 'a'), h('activate', 'b'), h('promote', 'c')])).toBe('b');
    expect(rollbackTarget([h('activate', 'a'), h('activate', 'b'), h('activate', 'c'), h('rollback', 'b')])).toBe('a');
    // A rollback --to somewhere else is undone by the next rollback.
    expect(rollbackTarget([h('activate', 'a'), h('activate', 'b'), h('activate', 'c'), h('rollback', 'a')])).toBe('c');
  });
});

describe('canary', () => {
  async function orchestrator() {
    const admin = reg.client();
    const t = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator' }));
    return reg.client(t.token);
  }

  it('sends about its weight of spawns to the canary, and records which version each got and why', async () => {
    const ref = await workflowWithVersions('cn', 2);
    await activate(ref, 1);
    const c = reg.client();
    expect(await c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight: 30 }))).toEqual({
      workflow: ref,
      activeVersion: 1,
      canary: { version: 2, weight: 30 },
    });
    const orch = await orchestrator();
    const n = 300;
    const spawned = [];
    for (let i = 0; i < n; i += 25) {
      spawned.push(
        ...(await Promise.all(Array.from({ length: 25 }, () => orch.call(() => orch.trpc.executions.spawn.mutate({ workflow: ref }))))),
      );
    }
    const canary = spawned.filter((s) => s.execution.versionReason === 'canary');
    for (const s of spawned) expect(s.execution.version).toBe(s.execution.versionReason === 'canary' ? 2 : 1);
    // Binomial(300, 0.3): mean 90, sd 7.9; ±5 sd fails by chance less than once in a million runs.
    expect(canary.length).toBeGreaterThan(90 - 40);
    expect(canary.length).toBeLessThan(90 + 40);
    // The VM gets the chosen version's bundle.
    const v2 = (await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }))).find((v) => v.version === 2)!;
    expect(canary[0]!.metadata.bundle?.hash).toBe(v2.bundleHash);
    const listed = await orch.call(() => orch.trpc.executions.get.query({ id: canary[0]!.execution.id }));
    expect(listed).toMatchObject({ version: 2, versionReason: 'canary', routingKey: null });
  });

  it('gives the same routing key the same version every time', async () => {
    const ref = await workflowWithVersions('cn-key', 2);
    await activate(ref, 1);
    const c = reg.client();
    await c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight: 50 }));
    const orch = await orchestrator();
    for (const key of ['customer-1', 'customer-2', 'customer-3', 'customer-4']) {
      const runs = await Promise.all(
        Array.from({ length: 8 }, () => orch.call(() => orch.trpc.executions.spawn.mutate({ workflow: ref, routingKey: key }))),
      );
      expect(new Set(runs.map((r) => r.execution.version)).size).toBe(1);
      expect(runs[0]!.execution.routingKey).toBe(key);
    }
  });

  it('chooses by weight: random draws and routing keys both land near the weight (pure function)', () => {
    const wf = '7f1c4a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f';
    const n = 20_000;
    for (const weight of [1, 10, 50, 90]) {
      // ±5 standard deviations of Binomial(n, weight/100).
      const slack = 5 * Math.sqrt((n * weight * (100 - weight)) / 10_000);
      const random = Array.from({ length: n }, () => chooseRelease(wf, weight, undefined)).filter((r) => r === 'canary').length;
      const keyed = Array.from({ length: n }, (_, i) => chooseRelease(wf, weight, `key-${i}`)).filter((r) => r === 'canary').length;
      for (const count of [random, keyed]) expect(Math.abs(count - (n * weight) / 100)).toBeLessThan(slack);
    }
    expect(chooseRelease(wf, null, 'anything')).toBe('active');
    // Raising the weight never moves a key off the canary.
    for (let i = 0; i < 1000; i++) {
      if (chooseRelease(wf, 10, `k${i}`) === 'canary') expect(chooseRelease(wf, 50, `k${i}`)).toBe('canary');
    }
    // Another workflow buckets the same keys independently.
    const other = '00000000-0000-4000-8000-000000000000';
    const same = Array.from({ length: 1000 }, (_, i) => routingBucket(wf, `k${i}`) === routingBucket(other, `k${i}`)).filter(
      Boolean,
    ).length;
    expect(same).toBeLessThan(60);
  });

  it('promote makes the canary active and ends it; clearing a canary is recorded, clearing none changes nothing', async () => {
    const ref = await workflowWithVersions('cn-promote', 3);
    await activate(ref, 1);
    const c = reg.client();
    await c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight: 10 }));
    await c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight: 50, message: 'ramp up' }));
    expect(await c.call(() => c.trpc.releases.promote.mutate({ workflow: ref }))).toEqual({
      workflow: ref,
      activeVersion: 2,
      canary: null,
    });
    await c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 3, weight: 5 }));
    expect(await c.call(() => c.trpc.releases.clearCanary.mutate({ workflow: ref }))).toEqual({
      workflow: ref,
      activeVersion: 2,
      canary: null,
    });
    const before = await history(ref);
    expect(await c.call(() => c.trpc.releases.clearCanary.mutate({ workflow: ref }))).toEqual({
      workflow: ref,
      activeVersion: 2,
      canary: null,
    });
    expect(await history(ref)).toEqual(before);
    expect(before.map((e) => [e.kind, e.fromVersion, e.toVersion, e.weight])).toEqual([
      ['canary_clear', 3, null, null],
      ['canary', null, 3, 5],
      ['promote', 1, 2, null],
      ['canary', 2, 2, 50],
      ['canary', null, 2, 10],
      ['activate', null, 1, null],
    ]);
    const wf = await c.call(() => c.trpc.workflows.get.query({ workflow: ref }));
    expect(wf).toMatchObject({ activeVersion: 2, canary: null });
  });

  it('activating the canary version directly ends the canary', async () => {
    const ref = await workflowWithVersions('cn-activate', 2);
    await activate(ref, 1);
    const c = reg.client();
    await c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight: 20 }));
    const versions = await c.call(() => c.trpc.workflows.versions.query({ workflow: ref }));
    expect(versions.map((v) => [v.version, v.active, v.canary])).toEqual([
      [2, false, true],
      [1, true, false],
    ]);
    await activate(ref, 2);
    expect(await state(ref)).toEqual({ workflow: ref, activeVersion: 2, canary: null });
    expect((await history(ref)).slice(0, 2).map((e) => e.kind)).toEqual(['canary_clear', 'activate']);
  });

  it('refuses promote without a canary', async () => {
    const ref = await workflowWithVersions('cn-nopromote', 1);
    await activate(ref, 1);
    const c = reg.client();
    await refusedWithoutChange(ref, () => c.call(() => c.trpc.releases.promote.mutate({ workflow: ref })), 'PRECONDITION_FAILED');
  });

  it('refuses a canary of the active version', async () => {
    const ref = await workflowWithVersions('cn-same', 1);
    await activate(ref, 1);
    const c = reg.client();
    await refusedWithoutChange(
      ref,
      () => c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 1, weight: 10 })),
      'PRECONDITION_FAILED',
    );
  });

  it('refuses a canary when no version is active', async () => {
    const ref = await workflowWithVersions('cn-noactive', 2);
    const c = reg.client();
    await refusedWithoutChange(
      ref,
      () => c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight: 10 })),
      'PRECONDITION_FAILED',
    );
  });

  it('refuses a canary of a version that does not exist', async () => {
    const ref = await workflowWithVersions('cn-missing', 1);
    await activate(ref, 1);
    const c = reg.client();
    await refusedWithoutChange(
      ref,
      () => c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 5, weight: 10 })),
      'NOT_FOUND',
    );
  });

  for (const weight of [0, 100, 12.5, -3]) {
    it(`refuses weight ${weight} (1–99 only)`, async () => {
      const ref = await workflowWithVersions(`cn-weight-${String(weight).replace(/\W/g, '_')}`, 2);
      await activate(ref, 1);
      const c = reg.client();
      await refusedWithoutChange(
        ref,
        () => c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight })),
        'BAD_REQUEST',
      );
    });
  }
});

describe('diff', () => {
  it('lists files added, removed and changed by content between two versions', async () => {
    const files: Record<string, string>[] = [
      { 'main.sh': 'echo 1\n', 'lib/a.js': 'a', 'lib/b.js': 'b', 'old.txt': 'bye' },
      { 'main.sh': 'echo 1\n', 'lib/a.js': 'a2', 'lib/b.js': 'b', 'new/c.txt': 'hello' },
    ];
    const ref = await workflowWithVersions('df', 2, (i) => files[i - 1]!);
    const c = reg.client();
    const d = await c.call(() => c.trpc.releases.diff.query({ workflow: ref, from: 1, to: 2 }));
    expect(d.added.map((f) => [f.path, f.size])).toEqual([['new/c.txt', 5]]);
    expect(d.removed.map((f) => f.path)).toEqual(['old.txt']);
    expect(d.changed.map((f) => [f.path, f.from.size, f.to.size])).toEqual([['lib/a.js', 1, 2]]);
    expect(d.changed[0]!.from.sha256).not.toBe(d.changed[0]!.to.sha256);
    expect(d.unchanged).toBe(2);
    const same = await c.call(() => c.trpc.releases.diff.query({ workflow: ref, from: 2, to: 2 }));
    expect(same).toMatchObject({ added: [], removed: [], changed: [], unchanged: 4 });
  });

  it('refuses a version that does not exist', async () => {
    const ref = await workflowWithVersions('df-missing', 1);
    const c = reg.client();
    expect((await failure(c.call(() => c.trpc.releases.diff.query({ workflow: ref, from: 1, to: 7 })))).code).toBe('NOT_FOUND');
  });

  it("hides another tenant's workflow", async () => {
    const ref = await workflowWithVersions('df-auth', 2);
    const admin = reg.client();
    const other = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'tenant:other' }));
    const c = reg.client(other.token);
    expect((await failure(c.call(() => c.trpc.releases.diff.query({ workflow: ref, from: 1, to: 2 })))).code).toBe('NOT_FOUND');
  });
});
