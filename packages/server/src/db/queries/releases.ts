/**
 * A workflow's release (its active version and canary) and the release history. The
 * pg_notify channels that tell every replica's release cache about a change are here too:
 * the notification commits with the change.
 */
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { ReleaseKind, SignaturePolicy } from '@swarm/sdk/contract';
import type { DbOrTx, Tx } from '../client.js';
import { bundles, tenantSigningKeys, tenants, workflowActivations, workflowVersions, workflows } from '../schema.js';
import { type WorkflowRow, workflowRefWhere } from './workflows.js';

/**
 * A released version's signature (docs/signing.md), with its key's delegation (which goes
 * to the VM) and whether the key was revoked. Changes to these notify the release channel.
 */
export type ReleasedSignature = {
  statement: string;
  signature: string;
  keyId: string;
  delegation: { payload: string; signature: string; rootKeyId: string } | null;
  keyRevoked: boolean;
  /** The key's delegation ends (null: the key is not the tenant's). */
  keyNotAfter: Date | null;
};

/** A released version, with what a download needs. Versions never change once registered (but for their signature). */
export type ReleasedVersion = {
  versionId: string;
  version: number;
  bundleHash: string;
  size: number;
  treeDigest: string | null;
  signed: ReleasedSignature | null;
};

/** What resolving and spawning need to know about a workflow. */
export type WorkflowRelease = {
  workflow: WorkflowRow;
  active: ReleasedVersion | null;
  canary: (ReleasedVersion & { weight: number }) | null;
  signaturePolicy: SignaturePolicy;
};

const activeV = alias(workflowVersions, 'cache_active_version');
const activeB = alias(bundles, 'cache_active_bundle');
const canaryV = alias(workflowVersions, 'cache_canary_version');
const canaryB = alias(bundles, 'cache_canary_bundle');
const activeK = alias(tenantSigningKeys, 'cache_active_key');
const canaryK = alias(tenantSigningKeys, 'cache_canary_key');

function releasedSignature(
  v: { statement: string | null; signature: string | null; keyId: string | null },
  k: { delegation: ReleasedSignature['delegation']; revokedAt: Date | null; notAfter: Date | null },
): ReleasedSignature | null {
  if (!v.statement || !v.signature || !v.keyId) return null;
  return {
    statement: v.statement,
    signature: v.signature,
    keyId: v.keyId,
    delegation: k.delegation,
    keyRevoked: k.revokedAt !== null,
    keyNotAfter: k.notAfter,
  };
}

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
      activeTreeDigest: activeB.treeDigest,
      canaryVersionId: workflows.canaryVersionId,
      canaryVersion: canaryV.version,
      canaryHash: canaryV.bundleHash,
      canarySize: canaryB.size,
      canaryTreeDigest: canaryB.treeDigest,
      canaryWeight: workflows.canaryWeight,
      timeoutSeconds: workflows.timeoutSeconds,
      signing: {
        policy: tenants.signaturePolicy,
        activeStatement: activeV.signatureStatement,
        activeSignature: activeV.signature,
        activeKeyId: activeV.signingKeyId,
        activeDelegation: activeK.delegation,
        activeRevokedAt: activeK.revokedAt,
        activeNotAfter: activeK.notAfter,
        canaryStatement: canaryV.signatureStatement,
        canarySignature: canaryV.signature,
        canaryKeyId: canaryV.signingKeyId,
        canaryDelegation: canaryK.delegation,
        canaryRevokedAt: canaryK.revokedAt,
        canaryNotAfter: canaryK.notAfter,
      },
    })
    .from(workflows)
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .leftJoin(activeV, eq(activeV.id, workflows.activeVersionId))
    .leftJoin(activeB, eq(activeB.hash, activeV.bundleHash))
    .leftJoin(canaryV, eq(canaryV.id, workflows.canaryVersionId))
    .leftJoin(canaryB, eq(canaryB.hash, canaryV.bundleHash))
    .leftJoin(activeK, and(eq(activeK.tenantId, workflows.tenantId), eq(activeK.keyId, activeV.signingKeyId)))
    .leftJoin(canaryK, and(eq(canaryK.tenantId, workflows.tenantId), eq(canaryK.keyId, canaryV.signingKeyId)))
    .where(workflowRefWhere(ref));
  if (!r) return null;
  const { activeHash, activeSize, activeTreeDigest, canaryHash, canarySize, canaryTreeDigest, signing: g, ...workflow } = r;
  const activeSigned = releasedSignature(
    { statement: g.activeStatement, signature: g.activeSignature, keyId: g.activeKeyId },
    { delegation: g.activeDelegation, revokedAt: g.activeRevokedAt, notAfter: g.activeNotAfter },
  );
  const canarySigned = releasedSignature(
    { statement: g.canaryStatement, signature: g.canarySignature, keyId: g.canaryKeyId },
    { delegation: g.canaryDelegation, revokedAt: g.canaryRevokedAt, notAfter: g.canaryNotAfter },
  );
  return {
    workflow,
    active:
      r.activeVersionId && r.activeVersion !== null && activeHash !== null && activeSize !== null
        ? {
            versionId: r.activeVersionId,
            version: r.activeVersion,
            bundleHash: activeHash,
            size: activeSize,
            treeDigest: activeTreeDigest,
            signed: activeSigned,
          }
        : null,
    canary:
      r.canaryVersionId && r.canaryVersion !== null && canaryHash !== null && canarySize !== null && r.canaryWeight !== null
        ? {
            versionId: r.canaryVersionId,
            version: r.canaryVersion,
            bundleHash: canaryHash,
            size: canarySize,
            treeDigest: canaryTreeDigest,
            weight: r.canaryWeight,
            signed: canarySigned,
          }
        : null,
    signaturePolicy: g.policy,
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
    signatureWarning?: string | undefined;
  },
): Promise<void> {
  await tx.insert(workflowActivations).values({
    signatureWarning: row.signatureWarning ?? null,
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
