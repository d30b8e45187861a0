/** Signing: tenants' keys, their signature policy, and the signatures versions carry (docs/signing.md). */
import { and, asc, eq, isNull, lt, sql } from 'drizzle-orm';
import type { SignaturePolicy } from '@swarm/sdk/contract';
import type { DbOrTx, Tx } from '../client.js';
import { tenantSigningKeys, tenants, workflowVersions, workflows } from '../schema.js';
import { notifyReleaseChanged } from './releases.js';

export type SigningKeyRow = typeof tenantSigningKeys.$inferSelect;

/**
 * Adds a key. When the tenant has this key already (same id): a live key whose new
 * delegation lasts longer takes it (re-delegation: `renewed`); otherwise, and always for a
 * revoked key (never un-revoked), the existing row is answered unchanged.
 */
export async function insertSigningKey(
  tx: Tx,
  row: Omit<SigningKeyRow, 'createdAt' | 'revokedAt' | 'revokedBy'>,
): Promise<{ key: SigningKeyRow; created: boolean; renewed: boolean }> {
  const [created] = await tx.insert(tenantSigningKeys).values(row).onConflictDoNothing().returning();
  if (created) return { key: created, created: true, renewed: false };
  const same = and(eq(tenantSigningKeys.tenantId, row.tenantId), eq(tenantSigningKeys.keyId, row.keyId));
  const [renewed] = await tx
    .update(tenantSigningKeys)
    .set({ delegation: row.delegation, notAfter: row.notAfter })
    .where(and(same, isNull(tenantSigningKeys.revokedAt), lt(tenantSigningKeys.notAfter, row.notAfter)))
    .returning();
  if (renewed) return { key: renewed, created: false, renewed: true };
  const [existing] = await tx.select().from(tenantSigningKeys).where(same);
  return { key: existing!, created: false, renewed: false };
}

export function signingKeysOf(db: DbOrTx, tenantId: string): Promise<SigningKeyRow[]> {
  return db.select().from(tenantSigningKeys).where(eq(tenantSigningKeys.tenantId, tenantId)).orderBy(asc(tenantSigningKeys.createdAt));
}

export async function signingKey(db: DbOrTx, tenantId: string, keyId: string): Promise<SigningKeyRow | undefined> {
  const [row] = await db
    .select()
    .from(tenantSigningKeys)
    .where(and(eq(tenantSigningKeys.tenantId, tenantId), eq(tenantSigningKeys.keyId, keyId)));
  return row;
}

/** Revokes a live key; undefined when there is no such live key. */
export async function revokeSigningKey(tx: Tx, tenantId: string, keyId: string, by: string): Promise<SigningKeyRow | undefined> {
  const [row] = await tx
    .update(tenantSigningKeys)
    .set({ revokedAt: sql`now()`, revokedBy: by })
    .where(and(eq(tenantSigningKeys.tenantId, tenantId), eq(tenantSigningKeys.keyId, keyId), isNull(tenantSigningKeys.revokedAt)))
    .returning();
  return row;
}

export async function setSignaturePolicy(tx: Tx, tenantId: string, policy: SignaturePolicy): Promise<void> {
  await tx.update(tenants).set({ signaturePolicy: policy }).where(eq(tenants.id, tenantId));
}

export async function signaturePolicyOf(db: DbOrTx, tenantId: string): Promise<SignaturePolicy | undefined> {
  const [row] = await db.select({ policy: tenants.signaturePolicy }).from(tenants).where(eq(tenants.id, tenantId));
  return row?.policy;
}

/** Stores a version's signature (replacing any earlier one). */
export async function setVersionSignature(
  tx: Tx,
  versionId: string,
  s: { statement: string; signature: string; keyId: string },
): Promise<void> {
  await tx
    .update(workflowVersions)
    .set({ signatureStatement: s.statement, signature: s.signature, signingKeyId: s.keyId })
    .where(eq(workflowVersions.id, versionId));
}

/**
 * Every replica's release cache holds its workflows' signing state (the released
 * versions' signatures, their keys' revocation, the tenant's policy): a change to a
 * tenant's keys or policy drops the entries of all its workflows, at commit. Returns their ids.
 */
export async function notifyTenantReleasesChanged(tx: Tx, tenantId: string): Promise<string[]> {
  const rows = await tx.select({ id: workflows.id }).from(workflows).where(eq(workflows.tenantId, tenantId));
  for (const r of rows) await notifyReleaseChanged(tx, r.id);
  return rows.map((r) => r.id);
}

/** What a released version's signature amounts to, for the policy (services/signing.ts). */
export type VersionSigning = {
  ref: string;
  version: number;
  keyId: string | null;
  policy: SignaturePolicy;
  signature: { statement: string; signature: string; keyId: string; delegation: SigningKeyRow['delegation'] } | null;
  /** The signing key is unknown to the tenant (removed) or revoked: when, or null. */
  keyRevokedAt: Date | null;
  keyKnown: boolean;
  keyNotAfter: Date | null;
};

/** A version's signature with its key's state and its tenant's policy, in one query. */
export async function versionSigning(db: DbOrTx, versionId: string): Promise<VersionSigning | undefined> {
  const [r] = await db
    .select({
      tenant: tenants.slug,
      workflow: workflows.name,
      version: workflowVersions.version,
      policy: tenants.signaturePolicy,
      statement: workflowVersions.signatureStatement,
      signature: workflowVersions.signature,
      keyId: workflowVersions.signingKeyId,
      delegation: tenantSigningKeys.delegation,
      revokedAt: tenantSigningKeys.revokedAt,
      notAfter: tenantSigningKeys.notAfter,
    })
    .from(workflowVersions)
    .innerJoin(workflows, eq(workflows.id, workflowVersions.workflowId))
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .leftJoin(
      tenantSigningKeys,
      and(eq(tenantSigningKeys.tenantId, workflows.tenantId), eq(tenantSigningKeys.keyId, workflowVersions.signingKeyId)),
    )
    .where(eq(workflowVersions.id, versionId));
  if (!r) return undefined;
  return {
    ref: `${r.tenant}/${r.workflow}`,
    version: r.version,
    keyId: r.keyId,
    policy: r.policy,
    signature:
      r.statement && r.signature && r.keyId && r.delegation
        ? { statement: r.statement, signature: r.signature, keyId: r.keyId, delegation: r.delegation }
        : null,
    keyRevokedAt: r.revokedAt,
    keyKnown: r.delegation !== null,
    keyNotAfter: r.notAfter,
  };
}
