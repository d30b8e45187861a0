/**
 * Release controls: which version a workflow's spawns get. Every change locks the
 * workflow's row, so changes to one workflow happen one at a time, and appends a row to
 * the release history (workflow_activations), which rollback reads.
 */
import { createHash, randomInt } from 'node:crypto';
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { ReleaseEvent, ReleaseKind, ReleaseState } from '@swarm/sdk/contract';
import type { Tx } from '../db/client.js';
import { workflowActivations, workflowVersions, workflows } from '../db/schema.js';
import { RegistryError, notFound } from '../errors.js';
import type { Deps, Principal } from './context.js';
import { changingRelease, notifyReleaseChanged } from './release-cache.js';
import { findWorkflow, findWritableWorkflow, loadWorkflow, type WorkflowRow } from './workflows.js';

type WorkflowLock = typeof workflows.$inferSelect;
type VersionRow = typeof workflowVersions.$inferSelect;

export async function lockWorkflow(tx: Tx, workflowId: string): Promise<WorkflowLock> {
  const [row] = await tx.select().from(workflows).where(eq(workflows.id, workflowId)).for('update');
  if (!row) throw notFound('workflow');
  return row;
}

const refOf = (wf: Pick<WorkflowRow, 'tenant' | 'name'>): string => `${wf.tenant}/${wf.name}`;

/** A version of the workflow by number, refused if gc retired it. */
export async function releasableVersion(tx: Tx, wf: Pick<WorkflowRow, 'id' | 'tenant' | 'name'>, version: number): Promise<VersionRow> {
  const [v] = await tx
    .select()
    .from(workflowVersions)
    .where(and(eq(workflowVersions.workflowId, wf.id), eq(workflowVersions.version, version)));
  if (!v) throw notFound(`version ${version} of workflow "${refOf(wf)}"`, `list them: swarm versions ${refOf(wf)}`);
  if (v.prunedAt) {
    throw new RegistryError(
      'PRECONDITION_FAILED',
      `version ${version} of ${refOf(wf)} was pruned by gc on ${v.prunedAt.toISOString()}; its bundle may be gone`,
      'push the same code again (swarm push) to register it as a new version',
    );
  }
  return v;
}

/**
 * Appends to the release history, and tells every replica's release cache (at commit)
 * that the workflow's release changed: every release change goes through here.
 * clock_timestamp(), not now(): rows sort in the order the lock granted them.
 */
async function record(
  tx: Tx,
  p: Principal,
  row: { workflowId: string; kind: ReleaseKind; from: string | null; to: string | null; weight?: number; message?: string | undefined },
) {
  await tx.insert(workflowActivations).values({
    workflowId: row.workflowId,
    kind: row.kind,
    fromVersionId: row.from,
    toVersionId: row.to,
    weight: row.weight ?? null,
    actor: p.name,
    message: row.message,
    createdAt: sql`clock_timestamp()`,
  });
  await notifyReleaseChanged(tx, row.workflowId);
}

/**
 * Makes `to` the active version (caller holds the workflow's lock). Activating the
 * canary's version ends the canary: the whole fleet now runs it.
 */
export async function setActive(
  tx: Tx,
  p: Principal,
  locked: WorkflowLock,
  to: string,
  kind: 'activate' | 'rollback' | 'promote',
  message?: string,
): Promise<void> {
  const endsCanary = locked.canaryVersionId === to;
  await tx
    .update(workflows)
    .set(endsCanary ? { activeVersionId: to, canaryVersionId: null, canaryWeight: null } : { activeVersionId: to })
    .where(eq(workflows.id, locked.id));
  await record(tx, p, { workflowId: locked.id, kind, from: locked.activeVersionId, to, message });
  if (endsCanary && kind !== 'promote') {
    await record(tx, p, { workflowId: locked.id, kind: 'canary_clear', from: to, to: null, message: `version became active (${kind})` });
  }
}

/**
 * The version rollback returns to. The history is replayed as a stack: activations and
 * promotions push; a rollback to the version under the top pops (undo), any other
 * rollback pushes. So rolling back twice after two bad releases goes back two steps,
 * not back and forth.
 */
export function rollbackTarget(history: { kind: ReleaseKind; toVersionId: string | null }[]): string | null {
  const stack: string[] = [];
  for (const h of history) {
    if (!h.toVersionId) continue;
    if (h.kind === 'rollback' && stack.length >= 2 && stack[stack.length - 2] === h.toVersionId) stack.pop();
    else stack.push(h.toVersionId);
  }
  return stack.length >= 2 ? stack[stack.length - 2]! : null;
}

async function releaseState(tx: Tx | Deps['db'], wf: WorkflowRow): Promise<ReleaseState> {
  const fresh = await loadWorkflow(tx, wf.id);
  return {
    workflow: refOf(fresh),
    activeVersion: fresh.activeVersion,
    canary: fresh.canaryVersion !== null && fresh.canaryWeight !== null ? { version: fresh.canaryVersion, weight: fresh.canaryWeight } : null,
  };
}

export async function getReleaseState(deps: Deps, p: Principal, input: { workflow: string }): Promise<ReleaseState> {
  return releaseState(deps.db, await findWorkflow(deps.db, p, input.workflow));
}

export async function rollback(
  deps: Deps,
  p: Principal,
  input: { workflow: string; to?: number | undefined; message?: string | undefined },
): Promise<ReleaseState> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    if (!locked.activeVersionId) {
      throw new RegistryError('PRECONDITION_FAILED', `${refOf(wf)} has no active version to roll back from`, `activate one: swarm activate ${refOf(wf)} <version>`);
    }
    let target: VersionRow;
    if (input.to !== undefined) {
      target = await releasableVersion(tx, wf, input.to);
    } else {
      const history = await tx
        .select({ kind: workflowActivations.kind, toVersionId: workflowActivations.toVersionId })
        .from(workflowActivations)
        .where(and(eq(workflowActivations.workflowId, wf.id), inArray(workflowActivations.kind, ['activate', 'rollback', 'promote'])))
        .orderBy(workflowActivations.createdAt);
      const id = rollbackTarget(history);
      if (!id) {
        throw new RegistryError('PRECONDITION_FAILED', `${refOf(wf)} has no earlier active version to roll back to`, `name one: swarm rollback ${refOf(wf)} --to <version>`);
      }
      const [v] = await tx.select().from(workflowVersions).where(eq(workflowVersions.id, id));
      target = await releasableVersion(tx, wf, v!.version);
    }
    if (target.id === locked.activeVersionId) {
      throw new RegistryError('PRECONDITION_FAILED', `version ${target.version} of ${refOf(wf)} is already active`, `see the history: swarm history ${refOf(wf)}`);
    }
    await setActive(tx, p, locked, target.id, 'rollback', input.message);
    return releaseState(tx, wf);
  });
}

export async function setCanary(
  deps: Deps,
  p: Principal,
  input: { workflow: string; version: number; weight: number; message?: string | undefined },
): Promise<ReleaseState> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    if (!locked.activeVersionId) {
      throw new RegistryError('PRECONDITION_FAILED', `${refOf(wf)} has no active version; a canary runs beside one`, `activate a version first: swarm activate ${refOf(wf)} <version>`);
    }
    const target = await releasableVersion(tx, wf, input.version);
    if (target.id === locked.activeVersionId) {
      throw new RegistryError('PRECONDITION_FAILED', `version ${input.version} is already the active version of ${refOf(wf)}`, 'a canary is a version other than the active one');
    }
    if (target.id !== locked.canaryVersionId || input.weight !== locked.canaryWeight) {
      await tx.update(workflows).set({ canaryVersionId: target.id, canaryWeight: input.weight }).where(eq(workflows.id, wf.id));
      await record(tx, p, { workflowId: wf.id, kind: 'canary', from: locked.canaryVersionId, to: target.id, weight: input.weight, message: input.message });
    }
    return releaseState(tx, wf);
  });
}

/** Ends the canary; all spawns get the active version again. Without a canary, nothing changes. */
export async function clearCanary(deps: Deps, p: Principal, input: { workflow: string; message?: string | undefined }): Promise<ReleaseState> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    if (locked.canaryVersionId) {
      await tx.update(workflows).set({ canaryVersionId: null, canaryWeight: null }).where(eq(workflows.id, wf.id));
      await record(tx, p, { workflowId: wf.id, kind: 'canary_clear', from: locked.canaryVersionId, to: null, message: input.message });
    }
    return releaseState(tx, wf);
  });
}

/** Makes the canary the active version. */
export async function promoteCanary(deps: Deps, p: Principal, input: { workflow: string; message?: string | undefined }): Promise<ReleaseState> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    if (!locked.canaryVersionId) {
      throw new RegistryError('PRECONDITION_FAILED', `${refOf(wf)} has no canary to promote`, `start one: swarm canary ${refOf(wf)} <version> --weight 10`);
    }
    await setActive(tx, p, locked, locked.canaryVersionId, 'promote', input.message);
    return releaseState(tx, wf);
  });
}

const fromVersion = alias(workflowVersions, 'from_version');
const toVersion = alias(workflowVersions, 'to_version');

/** The release history, newest first. */
export async function releaseHistory(deps: Deps, p: Principal, input: { workflow: string; limit: number }): Promise<ReleaseEvent[]> {
  const wf = await findWorkflow(deps.db, p, input.workflow);
  const rows = await deps.db
    .select({ h: workflowActivations, from: fromVersion.version, to: toVersion.version })
    .from(workflowActivations)
    .leftJoin(fromVersion, eq(fromVersion.id, workflowActivations.fromVersionId))
    .leftJoin(toVersion, eq(toVersion.id, workflowActivations.toVersionId))
    .where(eq(workflowActivations.workflowId, wf.id))
    .orderBy(desc(workflowActivations.createdAt))
    .limit(input.limit);
  return rows.map((r) => ({
    kind: r.h.kind,
    fromVersion: r.from,
    toVersion: r.to,
    weight: r.h.weight,
    actor: r.h.actor,
    message: r.h.message,
    createdAt: r.h.createdAt.toISOString(),
  }));
}

/**
 * Which of a workflow's released versions a spawn gets. With a routing key the choice is
 * a pure function of (workflow, key): the key's sha256 puts it in one of 100 buckets and
 * buckets below the weight get the canary, so a key stays on the canary as the weight
 * grows. Without a key, the choice is random at the canary's weight.
 */
export function chooseRelease(workflowId: string, canaryWeight: number | null, routingKey: string | undefined): 'active' | 'canary' {
  if (canaryWeight === null) return 'active';
  return spawnBucket(workflowId, routingKey) < canaryWeight ? 'canary' : 'active';
}

/** A spawn's bucket, 0–99: the routing key's, or a random one. Buckets below the canary's weight get the canary. */
export function spawnBucket(workflowId: string, routingKey: string | undefined): number {
  return routingKey === undefined ? randomInt(100) : routingBucket(workflowId, routingKey);
}

export function routingBucket(workflowId: string, routingKey: string): number {
  return createHash('sha256').update(`${workflowId}\0${routingKey}`).digest().readUInt32BE(0) % 100;
}
