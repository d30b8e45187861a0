/**
 * Retention and garbage collection against the real PostgreSQL and S3 server: which
 * versions `gc` retires and which it must keep, the bundles and orphaned objects it
 * deletes and the bytes it reports, dry runs that change nothing, the grace period, and
 * the race between gc and an upload of the same bytes, forced and free-running.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SwarmError } from '../packages/sdk/src/errors.js';
import { failure } from './support/failure.js';
import { BUNDLE_LOCK_SPACE, bundleLockKey } from '../packages/server/src/db/queries/bundles.js';
import { blobKey } from '../packages/server/src/storage/bundle-store.js';
import { bundleOf } from './support/bundles.js';
import { swarm } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

let reg: TestRegistry;
let work: string;
let sql: postgres.Sql;
beforeAll(async () => {
  // Grace 0: a bundle is collectable as soon as nothing uses it (the race tests rely on it).
  reg = await startTestRegistry({ storage: 's3', env: { SWARM_GC_GRACE_SECONDS: '0' } });
  sql = postgres(reg.deps.config.databaseUrl!, { max: 2, onnotice: () => {} });
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-gc-'));
  const c = reg.client();
  await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
});
afterAll(async () => {
  await sql?.end();
  await reg?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

let seq = 0;
/** A bundle file with unique content; returns its path and hash. */
async function uniqueBundle(label: string) {
  const file = await bundleOf(path.join(work, `${label}-${++seq}`), {
    'main.sh': `echo ${label} ${seq} ${randomBytes(8).toString('hex')}\n`,
  });
  const hash = createHash('sha256')
    .update(await fs.readFile(file))
    .digest('hex');
  return { file, hash };
}

async function workflowWithVersions(name: string, n: number, store: TestRegistry = reg) {
  const c = store.client();
  await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
  const ref = `acme/${name}`;
  const hashes: string[] = [];
  const files: string[] = [];
  for (let i = 1; i <= n; i++) {
    const b = await uniqueBundle(name);
    await c.uploadBundle(b.file, { workflow: ref });
    hashes.push(b.hash);
    files.push(b.file);
  }
  return { ref, hashes, files };
}

const gc = (input: { dryRun?: boolean; keep?: number; olderThanSeconds?: number }, on: TestRegistry = reg) => {
  const c = on.client();
  return c.call(() => c.trpc.gc.run.mutate({ dryRun: false, keep: 10, olderThanSeconds: 0, ...input }));
};
const versions = (ref: string, on: TestRegistry = reg) => {
  const c = on.client();
  return c.call(() => c.trpc.workflows.versions.query({ workflow: ref }));
};
const inStore = async (hash: string, on: TestRegistry = reg) => (await on.deps.store.stat(hash)) !== null;

/** Every version gc did not retire has its bundle in the store, with the recorded size. */
async function expectLiveVersionsStored() {
  const live = await sql<{ hash: string; size: string }[]>`
    select distinct b.hash, b.size from workflow_versions v join bundles b on b.hash = v.bundle_hash where v.pruned_at is null`;
  for (const b of live) {
    const st = await reg.deps.store.stat(b.hash);
    expect(st, `bundle ${b.hash} of a live version is missing from the store`).not.toBeNull();
    expect(st!.size).toBe(Number(b.size));
  }
  const deleted = await sql`select 1 from bundles where deleted_at is not null and exists
    (select 1 from workflow_versions v where v.bundle_hash = bundles.hash and v.pruned_at is null)`;
  expect(deleted.length, 'a live version names a bundle marked deleted').toBe(0);
}

describe('gc retention', () => {
  it('keeps the newest N, the active and the canary version, prunes the rest and frees their bundles', async () => {
    const { ref, hashes } = await workflowWithVersions('keep', 5);
    const c = reg.client();
    await c.call(() => c.trpc.versions.activate.mutate({ workflow: ref, version: 2 }));
    await c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 3, weight: 10 }));
    const sizes = await Promise.all(hashes.map(async (h) => (await reg.deps.store.stat(h))!.size));

    const report = await gc({ keep: 1 });
    expect(report.prunedVersions.filter((v) => v.workflow === ref).map((v) => v.version)).toEqual([1, 4]);
    expect(report.bytesFreed).toBeGreaterThanOrEqual(sizes[0]! + sizes[3]!);
    expect(report.deletedBundles).toBeGreaterThanOrEqual(2);

    expect(await Promise.all(hashes.map((h) => inStore(h)))).toEqual([false, true, true, false, true]);
    const listed = await versions(ref);
    expect(listed.map((v) => [v.version, v.prunedAt !== null])).toEqual([
      [5, false],
      [4, true],
      [3, false],
      [2, false],
      [1, true],
    ]);
    await expectLiveVersionsStored();
    // A second run finds nothing more to do.
    const again = await gc({ keep: 1 });
    expect(again.prunedVersions.filter((v) => v.workflow === ref)).toEqual([]);
  });

  it('refuses to activate, roll back to or canary a pruned version, and forgets its bundle', async () => {
    const { ref, hashes } = await workflowWithVersions('pruned-use', 3);
    const c = reg.client();
    await c.call(() => c.trpc.versions.activate.mutate({ workflow: ref, version: 3 }));
    await gc({ keep: 1 });
    expect((await failure(c.call(() => c.trpc.versions.activate.mutate({ workflow: ref, version: 1 })))).code).toBe('PRECONDITION_FAILED');
    expect((await failure(c.call(() => c.trpc.releases.rollback.mutate({ workflow: ref, to: 2 })))).code).toBe('PRECONDITION_FAILED');
    expect((await failure(c.call(() => c.trpc.releases.setCanary.mutate({ workflow: ref, version: 2, weight: 5 })))).code).toBe(
      'PRECONDITION_FAILED',
    );
    expect((await failure(c.call(() => c.trpc.releases.diff.query({ workflow: ref, from: 1, to: 3 })))).code).toBe('PRECONDITION_FAILED');
    expect(await c.call(() => c.trpc.bundles.exists.query({ hash: hashes[0]! }))).toBe(false);
    expect((await reg.fetch(`/internal/bundles/${hashes[0]}`)).status).toBe(404);
  });

  it('keeps a version an unfinished execution uses', async () => {
    const { ref } = await workflowWithVersions('running', 2);
    const c = reg.client();
    await c.call(() => c.trpc.versions.activate.mutate({ workflow: ref, version: 1 }));
    await c.call(() => c.trpc.executions.spawn.mutate({ workflow: ref })); // pending, on version 1
    await c.call(() => c.trpc.versions.activate.mutate({ workflow: ref, version: 2 }));
    const report = await gc({ keep: 1 });
    expect(report.prunedVersions.filter((v) => v.workflow === ref)).toEqual([]);
    // Ended as the registry ends executions: with its agent credentials revoked (executions_ended_revoked).
    await sql`update executions set status = 'failed', agent_token_hash = null where workflow_id = (select id from workflows where name = 'running')`;
    expect((await gc({ keep: 1 })).prunedVersions.filter((v) => v.workflow === ref).map((v) => v.version)).toEqual([1]);
  });

  it('only prunes versions older than --older-than', async () => {
    const { ref } = await workflowWithVersions('young', 3);
    expect((await gc({ keep: 1, olderThanSeconds: 3600 })).prunedVersions.filter((v) => v.workflow === ref)).toEqual([]);
    await sql`update workflow_versions set created_at = now() - interval '2 hours'
      where version = 1 and workflow_id = (select id from workflows where name = 'young')`;
    expect((await gc({ keep: 1, olderThanSeconds: 3600 })).prunedVersions.filter((v) => v.workflow === ref).map((v) => v.version)).toEqual([
      1,
    ]);
  });

  it('keeps a bundle another workflow still uses', async () => {
    const a = await workflowWithVersions('shared-a', 1);
    const c = reg.client();
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'shared-b' }));
    await c.uploadBundle(a.files[0]!, { workflow: 'acme/shared-b' });
    await c.uploadBundle((await uniqueBundle('shared-b')).file, { workflow: 'acme/shared-b' });
    const report = await gc({ keep: 1 });
    expect(report.prunedVersions.filter((v) => v.workflow === 'acme/shared-b').map((v) => v.version)).toEqual([1]);
    expect(await inStore(a.hashes[0]!)).toBe(true);
    await expectLiveVersionsStored();
  });

  it('a dry run reports what a real run does and changes nothing', async () => {
    const { ref, hashes } = await workflowWithVersions('dry', 3);
    const snapshot = async () => ({
      versions: await sql`select id, pruned_at from workflow_versions order by id`,
      bundles: await sql`select hash, deleted_at from bundles order by hash`,
      stored: await Promise.all(hashes.map((h) => inStore(h))),
    });
    const before = await snapshot();
    const dry = await gc({ dryRun: true, keep: 1 });
    expect(await snapshot()).toEqual(before);
    expect(dry.dryRun).toBe(true);
    expect(dry.prunedVersions.filter((v) => v.workflow === ref).map((v) => v.version)).toEqual([1, 2]);
    const real = await gc({ keep: 1 });
    expect({ ...real, dryRun: true, sweptUploads: 0 }).toEqual({ ...dry, sweptUploads: 0 });
  });

  it('pushing pruned bytes again makes a new version and stores them again', async () => {
    const { ref, hashes, files } = await workflowWithVersions('revive', 2);
    await gc({ keep: 1 });
    expect(await inStore(hashes[0]!)).toBe(false);
    // The registry no longer has these bytes, so the SDK uploads them.
    const c = reg.client();
    const r = await c.uploadBundle(files[0]!, { workflow: ref });
    expect(r).toMatchObject({ version: 3, created: true, uploaded: true, bundleHash: hashes[0] });
    expect(await inStore(hashes[0]!)).toBe(true);
    await expectLiveVersionsStored();
  });

  it("tells a tenant that gc removed a bundle only when the bundle was its own: another tenant's is just unknown", async () => {
    const { ref, hashes } = await workflowWithVersions('collected', 2);
    await gc({ keep: 1 });
    expect(await inStore(hashes[0]!)).toBe(false);
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'gc-other' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'gc-other', name: 'app' }));
    const tenantClient = async (tenant: string) =>
      reg.client((await c.call(() => c.trpc.tokens.create.mutate({ scope: `tenant:${tenant}` }))).token);
    const register = async (client: ReturnType<TestRegistry['client']>, workflow: string, bundleHash: string) =>
      client.call(() => client.trpc.versions.register.mutate({ workflow, bundleHash })).catch((e: SwarmError) => e);
    const other = await tenantClient('gc-other');
    const unknownHash = createHash('sha256').update('never stored').digest('hex');
    const collected = await register(other, 'gc-other/app', hashes[0]!);
    const unknown = await register(other, 'gc-other/app', unknownHash);
    expect(collected).toBeInstanceOf(SwarmError);
    expect({ code: (collected as SwarmError).code, message: (collected as SwarmError).message.replace(hashes[0]!, 'H') }).toEqual({
      code: 'NOT_FOUND',
      message: (unknown as SwarmError).message.replace(unknownHash, 'H'),
    });
    // Its own tenant still learns that the bytes were collected (the SDK then uploads them again).
    expect(await register(await tenantClient('acme'), ref, hashes[0]!)).toMatchObject({ code: 'CONFLICT' });
  });

  it('runs from the CLI: swarm gc --dry-run --json, then swarm gc with its summary line', async () => {
    const { ref } = await workflowWithVersions('cli', 3);
    const env = { SWARM_URL: reg.url, SWARM_TOKEN: reg.adminToken };
    const dry = await swarm(['gc', '--dry-run', '--keep', '2', '--older-than', '0s', '--json'], env);
    expect(dry.code, dry.stderr).toBe(0);
    const report = JSON.parse(dry.stdout) as { dryRun: boolean; prunedVersions: Array<{ workflow: string; version: number }> };
    expect(report.dryRun).toBe(true);
    expect(report.prunedVersions.filter((v) => v.workflow === ref).map((v) => v.version)).toEqual([1]);
    expect((await versions(ref)).every((v) => v.prunedAt === null)).toBe(true);
    const real = await swarm(['gc', '--keep', '2'], env);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toContain(`pruned ${ref} version 1`);
    expect(real.stdout).toMatch(
      /\d+ versions pruned, \d+ bundles and \d+ orphaned objects deleted, \d+ interrupted uploads swept, .* freed/,
    );
    expect((await versions(ref)).find((v) => v.version === 1)!.prunedAt).not.toBeNull();
  });

  it('refuses a non-admin token and bad options', async () => {
    const admin = reg.client();
    const orch = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator' }));
    const c = reg.client(orch.token);
    expect((await failure(c.call(() => c.trpc.gc.run.mutate({ dryRun: true, keep: 1, olderThanSeconds: 0 })))).code).toBe('FORBIDDEN');
    expect((await failure(gc({ keep: 0 }))).code).toBe('BAD_REQUEST');
    expect((await failure(gc({ olderThanSeconds: -1 }))).code).toBe('BAD_REQUEST');
  });
});

describe('gc and the store', () => {
  let fresh: TestRegistry;
  beforeAll(async () => {
    // Everything is old enough at once: orphans and temporary uploads included.
    fresh = await startTestRegistry({ storage: 's3', env: { SWARM_GC_GRACE_SECONDS: '0', SWARM_UPLOAD_SWEEP_AFTER_SECONDS: '0' } });
    const c = fresh.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
  });
  afterAll(() => fresh?.close());

  it('deletes objects no bundle row knows (a crash between storing and registering) and temporary uploads', async () => {
    const bytes = randomBytes(4096);
    const orphan = createHash('sha256').update(bytes).digest('hex');
    await fresh.deps.store.driver.put(blobKey(orphan), Readable.from([bytes]));
    await fresh.deps.store.driver.put('uploads/crashed-upload', Readable.from([randomBytes(1000)]));
    const { hashes } = await workflowWithVersions('orphans', 1, fresh);
    // S3's Last-Modified has whole seconds (rounded up on Swift): with a grace of 0 an
    // object is "old" only once that second has passed.
    await new Promise((r) => setTimeout(r, 2_100));

    const dry = await gc({ dryRun: true }, fresh);
    expect(dry).toMatchObject({ orphanObjects: 1, deletedBundles: 0, sweptUploads: 0, bytesFreed: 4096 });
    expect(await inStore(orphan, fresh)).toBe(true);

    const real = await gc({}, fresh);
    expect(real).toMatchObject({ orphanObjects: 1, deletedBundles: 0, sweptUploads: 1, bytesFreed: 4096 });
    expect(await inStore(orphan, fresh)).toBe(false);
    expect(await fresh.deps.store.driver.stat('uploads/crashed-upload')).toBeNull();
    expect(await inStore(hashes[0]!, fresh)).toBe(true);
  });

  it('leaves bundles and orphans younger than the grace period alone', async () => {
    const graceful = await startTestRegistry({ storage: 's3', env: { SWARM_GC_GRACE_SECONDS: '3600' } });
    try {
      const c = graceful.client();
      await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
      const { ref, hashes } = await workflowWithVersions('grace', 2, graceful);
      const bytes = randomBytes(100);
      const orphan = createHash('sha256').update(bytes).digest('hex');
      await graceful.deps.store.driver.put(blobKey(orphan), Readable.from([bytes]));
      const report = await gc({ keep: 1 }, graceful);
      expect(report.prunedVersions.map((v) => [v.workflow, v.version])).toEqual([[ref, 1]]);
      expect(report).toMatchObject({ deletedBundles: 0, orphanObjects: 0, bytesFreed: 0, keptForGrace: 2 });
      expect(await inStore(hashes[0]!, graceful)).toBe(true);
      expect(await inStore(orphan, graceful)).toBe(true);
    } finally {
      await graceful.close();
    }
  });
});

describe('gc racing an upload of the same bytes', () => {
  /** Waits (bounded) until `n` sessions wait for the bundle lock of `hash`. */
  async function waitForLockWaiters(hash: string, n: number) {
    for (let i = 0; i < 200; i++) {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_locks
        where locktype = 'advisory' and not granted and classid = ${BUNDLE_LOCK_SPACE} and objid = ${bundleLockKey(hash) >>> 0}`;
      if (row!.n >= n) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nobody waited for the lock of ${hash} within 10 s`);
  }

  /** Holds the bundle's lock from the test's own session until `release()` is called. */
  async function holdBundleLock(hash: string) {
    const session = await sql.reserve();
    await session`select pg_advisory_lock(${BUNDLE_LOCK_SPACE}, ${bundleLockKey(hash)})`;
    return async () => {
      await session`select pg_advisory_unlock(${BUNDLE_LOCK_SPACE}, ${bundleLockKey(hash)})`;
      session.release();
    };
  }

  it('gc deletes first: the registration finds the object gone, nothing dangles, and the SDK uploads again', async () => {
    const { ref, hashes, files } = await workflowWithVersions('race-gc-first', 2);
    const release = await holdBundleLock(hashes[0]!);
    const collecting = gc({ keep: 1 });
    await waitForLockWaiters(hashes[0]!, 1);
    const c = reg.client();
    const uploading = c.uploadBundle(files[0]!, { workflow: ref });
    await waitForLockWaiters(hashes[0]!, 2);
    await release();
    const [report, uploaded] = await Promise.all([collecting, uploading]);
    expect(report.prunedVersions.filter((v) => v.workflow === ref).map((v) => v.version)).toEqual([1]);
    expect(uploaded).toMatchObject({ version: 3, bundleHash: hashes[0], uploaded: true });
    expect(await inStore(hashes[0]!)).toBe(true);
    await expectLiveVersionsStored();
  });

  it('the upload registers first: gc sees the new version and keeps the bundle', async () => {
    const { ref, hashes, files } = await workflowWithVersions('race-upload-first', 2);
    const release = await holdBundleLock(hashes[0]!);
    const c = reg.client();
    const uploading = c.uploadBundle(files[0]!, { workflow: ref });
    await waitForLockWaiters(hashes[0]!, 1);
    const collecting = gc({ keep: 1 });
    await waitForLockWaiters(hashes[0]!, 2);
    await release();
    const [uploaded, report] = await Promise.all([uploading, collecting]);
    expect(uploaded).toMatchObject({ version: 3, bundleHash: hashes[0], uploaded: false });
    // Version 1 is retired, but its bytes live on as version 3.
    expect(report.prunedVersions.filter((v) => v.workflow === ref).map((v) => v.version)).toEqual([1]);
    expect(await inStore(hashes[0]!)).toBe(true);
    await expectLiveVersionsStored();
  });

  it("free-running: 10 rounds of gc against re-uploads of a collectable bundle never lose a version's object", async () => {
    const { ref, hashes, files } = await workflowWithVersions('race-loop', 1);
    const c = reg.client();
    for (let round = 0; round < 10; round++) {
      // Make the bundle collectable: a newer version pushes it out of the kept window.
      await c.uploadBundle((await uniqueBundle('race-loop')).file, { workflow: ref });
      const delay = (round % 5) * 15;
      const [uploaded] = await Promise.all([
        new Promise((r) => setTimeout(r, delay)).then(() => c.uploadBundle(files[0]!, { workflow: ref })),
        gc({ keep: 1 }),
      ]);
      expect(uploaded.bundleHash).toBe(hashes[0]);
      await expectLiveVersionsStored();
    }
  });
});
