/**
 * Registering and activating versions. Both lock the workflow's row for the length of
 * their transaction, so version numbers stay gapless under concurrency and exactly one
 * of two racing compare-and-set activations wins.
 */
import { and, desc, eq, isNull, sql } from 'drizzle-orm';
import type { ActiveVersion, WorkflowVersion } from '@swarm/sdk/contract';
import type { Tx } from '../db/client.js';
import { bundles, workflowVersions, workflows } from '../db/schema.js';
import { RegistryError, notFound } from '../errors.js';
import type { Deps, Principal } from './context.js';
import { lockWorkflow, releasableVersion, setActive } from './releases.js';
import { changingRelease, findRelease } from './release-cache.js';
import { findWritableWorkflow, toWorkflowVersion } from './workflows.js';

type Registered = { version: WorkflowVersion; created: boolean };

/**
 * Serializes everything that decides whether a stored bundle lives or goes: gc holds
 * this lock while it deletes the object, a registration while it checks the object is
 * there and references it. Transaction-scoped; the two-key form keeps it apart from the
 * migration lock.
 */
export async function lockBundle(tx: Pick<Tx, 'execute'>, hash: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${BUNDLE_LOCK_SPACE}, ${bundleLockKey(hash)})`);
}

export const BUNDLE_LOCK_SPACE = 0x5357;
/** The hash's first 32 bits as a signed int4: content hashes spread evenly over the key space. */
export const bundleLockKey = (hash: string) => Number.parseInt(hash.slice(0, 8), 16) | 0;

/**
 * Adds a version for a bundle already in the `bundles` table, unless the workflow's
 * newest version has the same hash: then that version is returned (idempotent retry).
 * With `activate`, the version also becomes active (recorded in the activation history).
 */
export async function createVersion(
  tx: Tx,
  p: Principal,
  input: { workflowId: string; bundleHash: string; message?: string | undefined; activate: boolean },
): Promise<Registered> {
  const wf = await lockWorkflow(tx, input.workflowId);
  const [newest] = await tx
    .select()
    .from(workflowVersions)
    .where(eq(workflowVersions.workflowId, wf.id))
    .orderBy(desc(workflowVersions.version))
    .limit(1);
  let version = newest;
  let created = false;
  if (newest?.bundleHash !== input.bundleHash || newest.prunedAt) {
    [version] = await tx
      .insert(workflowVersions)
      .values({
        workflowId: wf.id,
        version: (newest?.version ?? 0) + 1,
        bundleHash: input.bundleHash,
        message: input.message,
        createdBy: p.name,
      })
      .returning();
    created = true;
  }
  let release = { activeVersionId: wf.activeVersionId, canaryVersionId: wf.canaryVersionId };
  if (input.activate && release.activeVersionId !== version!.id) {
    await setActive(tx, p, wf, version!.id, 'activate', input.message);
    release = { activeVersionId: version!.id, canaryVersionId: wf.canaryVersionId === version!.id ? null : wf.canaryVersionId };
  }
  const [b] = await tx.select({ size: bundles.size }).from(bundles).where(eq(bundles.hash, input.bundleHash));
  return { version: toWorkflowVersion(version!, b!.size, release), created };
}

/**
 * Inside a registration's transaction: makes sure the bundle's object is in the store and
 * its row says so, under the bundle's lock, so a gc deleting the same bundle either
 * finished before (then the object is missing and the caller must upload again) or
 * starts after (then it sees the new version and keeps the bundle).
 */
/** CONFLICT, which the SDK answers by uploading the bytes again. */
const bundleCollected = (hash: string) =>
  new RegistryError(
    'CONFLICT',
    `bundle ${hash} was removed from the store by garbage collection; nothing was registered`,
    'upload the bundle again (swarm push and the SDK do this by themselves)',
  );

export async function claimStoredBundle(tx: Tx, deps: Pick<Deps, 'store'>, bundle: { hash: string; size: number }): Promise<void> {
  await lockBundle(tx, bundle.hash);
  const object = await deps.store.stat(bundle.hash);
  if (object?.size !== bundle.size) throw bundleCollected(bundle.hash);
  await tx
    .insert(bundles)
    .values({ hash: bundle.hash, size: bundle.size })
    // Bytes stored again after gc deleted them start a new grace period.
    .onConflictDoUpdate({
      target: bundles.hash,
      set: { deletedAt: null, createdAt: sql`case when ${bundles.deletedAt} is null then ${bundles.createdAt} else now() end` },
    });
}

/**
 * Stored bundles a principal may name by hash: any for admin and orchestrator, else those
 * its tenant's versions use. A bundle gc removed is not there.
 */
export async function bundleVisibleTo(deps: Pick<Deps, 'db'>, p: Principal, hash: string): Promise<{ size: number } | null> {
  const [row] =
    p.scope === 'tenant'
      ? await deps.db
          .select({ size: bundles.size })
          .from(bundles)
          .where(
            sql`${bundles.hash} = ${hash} and ${bundles.deletedAt} is null and exists (select 1 from ${workflowVersions} join ${workflows} on ${workflows.id} = ${workflowVersions.workflowId} where ${workflowVersions.bundleHash} = ${bundles.hash} and ${workflows.tenantId} = ${p.tenantId})`,
          )
      : await deps.db
          .select({ size: bundles.size })
          .from(bundles)
          .where(and(eq(bundles.hash, hash), isNull(bundles.deletedAt)));
  return row ?? null;
}

export async function registerVersion(
  deps: Deps,
  p: Principal,
  input: { workflow: string; bundleHash: string; expectedHash?: string | undefined; message?: string | undefined; activate: boolean },
): Promise<Registered> {
  if (input.expectedHash !== undefined && input.expectedHash !== input.bundleHash) {
    throw new RegistryError('PRECONDITION_FAILED', `expected bundle ${input.expectedHash}, got ${input.bundleHash}`);
  }
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  const visible = await bundleVisibleTo(deps, p, input.bundleHash);
  if (!visible) {
    const [deleted] = await deps.db.select({ at: bundles.deletedAt }).from(bundles).where(eq(bundles.hash, input.bundleHash));
    if (deleted?.at) throw bundleCollected(input.bundleHash);
    throw new RegistryError('NOT_FOUND', `bundle ${input.bundleHash} not found`, 'upload it first: swarm push, or POST /internal/bundles');
  }
  return changingRelease(deps, wf.id, async (tx) => {
    await claimStoredBundle(tx, deps, { hash: input.bundleHash, size: visible.size });
    return createVersion(tx, p, { ...input, workflowId: wf.id });
  });
}

export async function activateVersion(
  deps: Deps,
  p: Principal,
  input: { workflow: string; version: number; expectedActiveVersion?: number | null | undefined; message?: string | undefined },
): Promise<WorkflowVersion> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    const [current] = locked.activeVersionId
      ? await tx.select().from(workflowVersions).where(eq(workflowVersions.id, locked.activeVersionId))
      : [];
    const currentNumber = current?.version ?? null;
    if (input.expectedActiveVersion !== undefined && input.expectedActiveVersion !== currentNumber) {
      throw new RegistryError(
        'CONFLICT',
        `the active version of ${input.workflow} is ${currentNumber ?? 'none'}, not ${input.expectedActiveVersion}`,
        'someone else activated a version meanwhile; check `swarm versions` and retry with the right --expect',
      );
    }
    const target = await releasableVersion(tx, wf, input.version);
    if (locked.activeVersionId !== target.id) {
      await setActive(tx, p, locked, target.id, 'activate', input.message);
    }
    const [b] = await tx.select({ size: bundles.size }).from(bundles).where(eq(bundles.hash, target.bundleHash));
    const canaryVersionId = locked.canaryVersionId === target.id ? null : locked.canaryVersionId;
    return toWorkflowVersion(target, b!.size, { activeVersionId: target.id, canaryVersionId });
  });
}

/** The active version with a download URL for its bundle: what a spawn resolves. Served from the release cache. */
export async function resolveActive(
  deps: Deps,
  p: Principal,
  input: { workflow: string; storeEndpoint?: string | undefined },
): Promise<ActiveVersion> {
  const { workflow: wf, active } = await findRelease(deps, p, input.workflow);
  if (!active) {
    throw new RegistryError(
      'NOT_FOUND',
      `workflow "${wf.tenant}/${wf.name}" has no active version`,
      `activate one: swarm activate ${wf.tenant}/${wf.name} <version>`,
    );
  }
  const { url, expiresAt } = await deps.store.signedUrl(active.bundleHash, deps.config.urlTtlSeconds, input.storeEndpoint);
  return {
    workflowId: wf.id,
    tenantId: wf.tenantId,
    versionId: active.versionId,
    version: active.version,
    bundleHash: active.bundleHash,
    size: active.size,
    bundleUrl: url,
    expiresAt: expiresAt.toISOString(),
  };
}
