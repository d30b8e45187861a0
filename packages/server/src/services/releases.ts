/**
 * Release controls: which version a workflow's spawns get. Every change locks the
 * workflow's row, so changes to one workflow happen one at a time, and appends a row to
 * the release history (workflow_activations), which rollback reads.
 */
import { createHash, randomInt } from 'node:crypto';
import type { ReleaseEvent, ReleaseKind, ReleaseState } from '@swarm/sdk/contract';
import type { DbOrTx, Tx } from '../db/client.js';
import {
  activeVersionHistory,
  insertReleaseEvent,
  notifyReleaseChanged,
  releaseHistoryRows,
  updateRelease,
} from '../db/queries/releases.js';
import { type VersionRow, versionById, versionByNumber } from '../db/queries/versions.js';
import { type WorkflowLock, type WorkflowRow, lockWorkflow, workflowById } from '../db/queries/workflows.js';
import { RegistryError, notFound } from '../errors.js';
import { findWorkflow, findWritableWorkflow } from './access.js';
import type { Deps, Principal } from './context.js';
import { changingRelease } from './release-cache.js';
import { releasePolicy } from './signing.js';

const refOf = (wf: Pick<WorkflowRow, 'tenant' | 'name'>): string => `${wf.tenant}/${wf.name}`;

/** A version of the workflow by number, refused if gc retired it. */
export async function releasableVersion(tx: Tx, wf: Pick<WorkflowRow, 'id' | 'tenant' | 'name'>, version: number): Promise<VersionRow> {
  const v = await versionByNumber(tx, wf.id, version);
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
 */
async function record(
  tx: Tx,
  p: Principal,
  row: {
    workflowId: string;
    kind: ReleaseKind;
    from: string | null;
    to: string | null;
    weight?: number;
    message?: string | undefined;
    signatureWarning?: string | undefined;
  },
) {
  await insertReleaseEvent(tx, { ...row, actor: p.name });
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
  const signatureWarning = await releasePolicy(tx, to);
  await updateRelease(
    tx,
    locked.id,
    endsCanary ? { activeVersionId: to, canaryVersionId: null, canaryWeight: null } : { activeVersionId: to },
  );
  await record(tx, p, { workflowId: locked.id, kind, from: locked.activeVersionId, to, message, signatureWarning });
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

async function releaseState(db: DbOrTx, wf: WorkflowRow): Promise<ReleaseState> {
  const fresh = await workflowById(db, wf.id);
  if (!fresh) throw notFound(`workflow ${wf.id}`);
  return {
    workflow: refOf(fresh),
    activeVersion: fresh.activeVersion,
    canary:
      fresh.canaryVersion !== null && fresh.canaryWeight !== null ? { version: fresh.canaryVersion, weight: fresh.canaryWeight } : null,
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
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `${refOf(wf)} has no active version to roll back from`,
        `activate one: swarm activate ${refOf(wf)} <version>`,
      );
    }
    let target: VersionRow;
    if (input.to !== undefined) {
      target = await releasableVersion(tx, wf, input.to);
    } else {
      const id = rollbackTarget(await activeVersionHistory(tx, wf.id));
      if (!id) {
        throw new RegistryError(
          'PRECONDITION_FAILED',
          `${refOf(wf)} has no earlier active version to roll back to`,
          `name one: swarm rollback ${refOf(wf)} --to <version>`,
        );
      }
      const v = await versionById(tx, id);
      target = await releasableVersion(tx, wf, v!.version);
    }
    if (target.id === locked.activeVersionId) {
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `version ${target.version} of ${refOf(wf)} is already active`,
        `see the history: swarm history ${refOf(wf)}`,
      );
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
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `${refOf(wf)} has no active version; a canary runs beside one`,
        `activate a version first: swarm activate ${refOf(wf)} <version>`,
      );
    }
    const target = await releasableVersion(tx, wf, input.version);
    if (target.id === locked.activeVersionId) {
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `version ${input.version} is already the active version of ${refOf(wf)}`,
        'a canary is a version other than the active one',
      );
    }
    if (target.id !== locked.canaryVersionId || input.weight !== locked.canaryWeight) {
      const signatureWarning = await releasePolicy(tx, target.id);
      await updateRelease(tx, wf.id, { canaryVersionId: target.id, canaryWeight: input.weight });
      await record(tx, p, {
        workflowId: wf.id,
        kind: 'canary',
        from: locked.canaryVersionId,
        to: target.id,
        weight: input.weight,
        message: input.message,
        signatureWarning,
      });
    }
    return releaseState(tx, wf);
  });
}

/** Ends the canary; all spawns get the active version again. Without a canary, nothing changes. */
export async function clearCanary(
  deps: Deps,
  p: Principal,
  input: { workflow: string; message?: string | undefined },
): Promise<ReleaseState> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    if (locked.canaryVersionId) {
      await updateRelease(tx, wf.id, { canaryVersionId: null, canaryWeight: null });
      await record(tx, p, { workflowId: wf.id, kind: 'canary_clear', from: locked.canaryVersionId, to: null, message: input.message });
    }
    return releaseState(tx, wf);
  });
}

/** Makes the canary the active version. */
export async function promoteCanary(
  deps: Deps,
  p: Principal,
  input: { workflow: string; message?: string | undefined },
): Promise<ReleaseState> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    if (!locked.canaryVersionId) {
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `${refOf(wf)} has no canary to promote`,
        `start one: swarm canary ${refOf(wf)} <version> --weight 10`,
      );
    }
    await setActive(tx, p, locked, locked.canaryVersionId, 'promote', input.message);
    return releaseState(tx, wf);
  });
}

/** The release history, newest first. */
export async function releaseHistory(deps: Deps, p: Principal, input: { workflow: string; limit: number }): Promise<ReleaseEvent[]> {
  const wf = await findWorkflow(deps.db, p, input.workflow);
  const rows = await releaseHistoryRows(deps.db, wf.id, input.limit);
  return rows.map((r) => ({
    kind: r.h.kind,
    fromVersion: r.from,
    toVersion: r.to,
    weight: r.h.weight,
    actor: r.h.actor,
    message: r.h.message,
    signatureWarning: r.h.signatureWarning,
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
