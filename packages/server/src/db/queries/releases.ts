/**
 * A workflow's release (its active version and canary) and the release history. The
 * pg_notify channels that tell every replica's release cache about a change are here too:
 * the notification commits with the change.
 */
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { ReleaseKind } from '@swarm/sdk/contract';
import type { DbOrTx, Tx } from '../client.js';
import { bundles, tenants, workflowActivations, workflowVersions, workflows } from '../schema.js';
import { type WorkflowRow, workflowRefWhere } from './workflows.js';

/** A released version, with what a download needs. Versions never change once registered. */
export type ReleasedVersion = { versionId: string; version: number; bundleHash: string; size: number };

/** What resolving and spawning need to know about a workflow. */
export type WorkflowRelease = {
  workflow: WorkflowRow;
  active: ReleasedVersion | null;
  canary: (ReleasedVersion & { weight: number }) | null;
};

const activeV = alias(workflowVersions, 'cache_active_version');
const activeB = alias(bundles, 'cache_active_bundle');
const canaryV = alias(workflowVersions, 'cache_canary_version');
const canaryB = alias(bundles, 'cache_canary_bundle');

/** The workflow (by id or `tenant/name`), its active version and its canary, in one query (one snapshot). */
export async function loadRelease(db: DbOrTx, ref: string): Promise<WorkflowRelease | null> {
  const [r] = await db
    .select({
      id: workflows.id,
      tenantId: workflows.tenantId,
      tenant: tenants.slug,
      name: workflows.name,
      createdAt: workflows.createdAt,
      activeVersionId: workflows.activeVersionId,
      activeVersion: activeV.version,
      activeHash: activeV.bundleHash,
      activeSize: activeB.size,
      canaryVersionId: workflows.canaryVersionId,
      canaryVersion: canaryV.version,
      canaryHash: canaryV.bundleHash,
      canarySize: canaryB.size,
      canaryWeight: workflows.canaryWeight,
      timeoutSeconds: workflows.timeoutSeconds,
    })
    .from(workflows)
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .leftJoin(activeV, eq(activeV.id, workflows.activeVersionId))
    .leftJoin(activeB, eq(activeB.hash, activeV.bundleHash))
    .leftJoin(canaryV, eq(canaryV.id, workflows.canaryVersionId))
    .leftJoin(canaryB, eq(canaryB.hash, canaryV.bundleHash))
    .where(workflowRefWhere(ref));
  if (!r) return null;
  const { activeHash, activeSize, canaryHash, canarySize, ...workflow } = r;
  return {
    workflow,
    active:
      r.activeVersionId && r.activeVersion !== null && activeHash !== null && activeSize !== null
        ? { versionId: r.activeVersionId, version: r.activeVersion, bundleHash: activeHash, size: activeSize }
        : null,
    canary:
      r.canaryVersionId && r.canaryVersion !== null && canaryHash !== null && canarySize !== null && r.canaryWeight !== null
        ? { versionId: r.canaryVersionId, version: r.canaryVersion, bundleHash: canaryHash, size: canarySize, weight: r.canaryWeight }
        : null,
  };
}

/** Moves the workflow's active version and/or canary (the caller holds the workflow's lock). */
export async function updateRelease(
  tx: Tx,
  workflowId: string,
  change: { activeVersionId?: string; canaryVersionId?: string | null; canaryWeight?: number | null },
): Promise<void> {
  await tx.update(workflows).set(change).where(eq(workflows.id, workflowId));
}

/**
 * Appends a row to the release history. clock_timestamp(), not now(): rows sort in the
 * order the workflow's lock granted them.
 */
export async function insertReleaseEvent(
  tx: Tx,
  row: {
    workflowId: string;
    kind: ReleaseKind;
    from: string | null;
    to: string | null;
    weight?: number | undefined;
    actor: string;
    message?: string | undefined;
  },
): Promise<void> {
  await tx.insert(workflowActivations).values({
    workflowId: row.workflowId,
    kind: row.kind,
    fromVersionId: row.from,
    toVersionId: row.to,
    weight: row.weight ?? null,
    actor: row.actor,
    message: row.message,
    createdAt: sql`clock_timestamp()`,
  });
}

/** Changes of the active version (activate, rollback, promote), oldest first: what rollback replays. */
export function activeVersionHistory(tx: Tx, workflowId: string): Promise<{ kind: ReleaseKind; toVersionId: string | null }[]> {
  return tx
    .select({ kind: workflowActivations.kind, toVersionId: workflowActivations.toVersionId })
    .from(workflowActivations)
    .where(and(eq(workflowActivations.workflowId, workflowId), inArray(workflowActivations.kind, ['activate', 'rollback', 'promote'])))
    .orderBy(workflowActivations.createdAt);
}

const fromVersion = alias(workflowVersions, 'from_version');
const toVersion = alias(workflowVersions, 'to_version');

/** The release history with version numbers, newest first. */
export function releaseHistoryRows(db: DbOrTx, workflowId: string, limit: number) {
  return db
    .select({ h: workflowActivations, from: fromVersion.version, to: toVersion.version })
    .from(workflowActivations)
    .leftJoin(fromVersion, eq(fromVersion.id, workflowActivations.fromVersionId))
    .leftJoin(toVersion, eq(toVersion.id, workflowActivations.toVersionId))
    .where(eq(workflowActivations.workflowId, workflowId))
    .orderBy(desc(workflowActivations.createdAt))
    .limit(limit);
}

export const RELEASE_CHANNEL = 'swarm_release';

/**
 * Inside a transaction that changes the workflow's release (or creates it): every replica
 * drops its cache entry for `key` at commit (a workflow id, or a `tenant/name` cached as missing).
 */
export async function notifyReleaseChanged(tx: Pick<Tx, 'execute'>, key: string): Promise<void> {
  await tx.execute(sql`select pg_notify(${RELEASE_CHANNEL}, ${key})`);
}
