/**
 * Registering and activating versions. Both lock the workflow's row for the length of
 * their transaction, so version numbers stay gapless under concurrency and exactly one
 * of two racing compare-and-set activations wins.
 */
import { desc, eq, sql } from 'drizzle-orm';
import type { ActiveVersion, WorkflowVersion } from '@swarm/sdk/contract';
import type { Tx } from '../db/client.js';
import { activeWorkflowVersions, bundles, workflowActivations, workflowVersions, workflows } from '../db/schema.js';
import { RegistryError, notFound } from '../errors.js';
import type { Deps, Principal } from './context.js';
import { findWorkflow, findWritableWorkflow, toWorkflowVersion } from './workflows.js';

type Registered = { version: WorkflowVersion; created: boolean };

async function lockWorkflow(tx: Tx, workflowId: string) {
  const [row] = await tx.select().from(workflows).where(eq(workflows.id, workflowId)).for('update');
  if (!row) throw notFound('workflow');
  return row;
}

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
  if (newest?.bundleHash !== input.bundleHash) {
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
  let activeVersionId = wf.activeVersionId;
  if (input.activate && activeVersionId !== version!.id) {
    await setActive(tx, p, wf.id, activeVersionId, version!.id, input.message);
    activeVersionId = version!.id;
  }
  const [b] = await tx.select({ size: bundles.size }).from(bundles).where(eq(bundles.hash, input.bundleHash));
  return { version: toWorkflowVersion(version!, b!.size, activeVersionId), created };
}

async function setActive(tx: Tx, p: Principal, workflowId: string, from: string | null, to: string, message?: string) {
  await tx.update(workflows).set({ activeVersionId: to }).where(eq(workflows.id, workflowId));
  await tx.insert(workflowActivations).values({ workflowId, fromVersionId: from, toVersionId: to, actor: p.name, message });
}

/** Bundles a principal may name by hash: any for admin and orchestrator, else those its tenant's versions use. */
export async function bundleVisibleTo(deps: Pick<Deps, 'db'>, p: Principal, hash: string): Promise<{ size: number } | null> {
  const [row] =
    p.scope === 'tenant'
      ? await deps.db
          .select({ size: bundles.size })
          .from(bundles)
          .where(
            sql`${bundles.hash} = ${hash} and exists (select 1 from ${workflowVersions} join ${workflows} on ${workflows.id} = ${workflowVersions.workflowId} where ${workflowVersions.bundleHash} = ${bundles.hash} and ${workflows.tenantId} = ${p.tenantId})`,
          )
      : await deps.db.select({ size: bundles.size }).from(bundles).where(eq(bundles.hash, hash));
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
  if (!(await bundleVisibleTo(deps, p, input.bundleHash))) {
    throw new RegistryError('NOT_FOUND', `bundle ${input.bundleHash} not found`, 'upload it first: swarm push, or POST /internal/bundles');
  }
  return deps.db.transaction((tx) => createVersion(tx, p, { ...input, workflowId: wf.id }));
}

export async function activateVersion(
  deps: Deps,
  p: Principal,
  input: { workflow: string; version: number; expectedActiveVersion?: number | null | undefined; message?: string | undefined },
): Promise<WorkflowVersion> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return deps.db.transaction(async (tx) => {
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
    const [target] = await tx
      .select({ v: workflowVersions, size: bundles.size })
      .from(workflowVersions)
      .innerJoin(bundles, eq(bundles.hash, workflowVersions.bundleHash))
      .where(sql`${workflowVersions.workflowId} = ${wf.id} and ${workflowVersions.version} = ${input.version}`);
    if (!target) throw notFound(`version ${input.version} of workflow "${input.workflow}"`);
    if (locked.activeVersionId !== target.v.id) {
      await setActive(tx, p, wf.id, locked.activeVersionId, target.v.id, input.message);
    }
    return toWorkflowVersion(target.v, target.size, target.v.id);
  });
}

/** The active version with a download URL for its bundle: what a spawn resolves. */
export async function resolveActive(
  deps: Deps,
  p: Principal,
  input: { workflow: string; storeEndpoint?: string | undefined },
): Promise<ActiveVersion> {
  const wf = await findWorkflow(deps.db, p, input.workflow);
  const [row] = await deps.db.select().from(activeWorkflowVersions).where(eq(activeWorkflowVersions.workflowId, wf.id));
  if (!row) {
    throw new RegistryError(
      'NOT_FOUND',
      `workflow "${wf.tenant}/${wf.name}" has no active version`,
      `activate one: swarm activate ${wf.tenant}/${wf.name} <version>`,
    );
  }
  const ttl = deps.config.urlTtlSeconds;
  const bundleUrl = await deps.store.downloadUrl(row.bundleHash, ttl, input.storeEndpoint);
  return {
    workflowId: row.workflowId,
    tenantId: row.tenantId,
    versionId: row.versionId,
    version: row.version,
    bundleHash: row.bundleHash,
    size: row.size,
    bundleUrl,
    expiresAt: new Date(Date.now() + ttl * 1000).toISOString(),
  };
}

