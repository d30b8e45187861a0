/** API tokens (stored as their sha256) and the executions' agent tokens. */
import { and, desc, eq, gt, isNotNull, isNull, sql } from 'drizzle-orm';
import type { TokenScopeKind } from '@swarm/sdk/contract';
import type { DbOrTx, Tx } from '../client.js';
import { apiTokens, executions, tenants } from '../schema.js';

export type ApiTokenRow = typeof apiTokens.$inferSelect;

export const TOKEN_CHANNEL = 'swarm_tokens';

/**
 * The execution whose agent credential has this sha256 (hex): a bootstrap token only
 * until it was exchanged or expires (database time), a session until the execution ends.
 * Both hashes are cleared when the execution ends (executions_ended_revoked).
 */
export async function executionOfAgentCredential(
  db: DbOrTx,
  kind: 'bootstrap' | 'session',
  tokenHash: string,
): Promise<{ id: string } | undefined> {
  const live =
    kind === 'bootstrap'
      ? and(eq(executions.agentTokenHash, tokenHash), gt(executions.agentTokenExpiresAt, sql`now()`))
      : eq(executions.agentSessionHash, tokenHash);
  const [execution] = await db.select({ id: executions.id }).from(executions).where(live).limit(1);
  return execution;
}

/**
 * Trades the execution's live bootstrap token for a session: clears the bootstrap hash
 * and stores the session's, in one statement, so of two concurrent exchanges one wins.
 * False when the bootstrap token is spent, expired or its execution ended.
 */
export async function startAgentSession(db: DbOrTx, executionId: string, sessionHash: string): Promise<boolean> {
  const rows = await db
    .update(executions)
    .set({ agentTokenHash: null, agentSessionHash: sessionHash })
    .where(and(eq(executions.id, executionId), isNotNull(executions.agentTokenHash), gt(executions.agentTokenExpiresAt, sql`now()`)))
    .returning({ id: executions.id });
  return rows.length > 0;
}

/** The unrevoked API token with this sha256 (hex), with its tenant's slug. */
export async function liveApiToken(
  db: DbOrTx,
  tokenHash: string,
): Promise<(Pick<ApiTokenRow, 'id' | 'name' | 'scope' | 'tenantId'> & { tenantSlug: string | null }) | undefined> {
  const [row] = await db
    .select({ id: apiTokens.id, name: apiTokens.name, scope: apiTokens.scope, tenantId: apiTokens.tenantId, tenantSlug: tenants.slug })
    .from(apiTokens)
    .leftJoin(tenants, eq(tenants.id, apiTokens.tenantId))
    .where(and(eq(apiTokens.tokenHash, tokenHash), isNull(apiTokens.revokedAt)))
    .limit(1);
  return row;
}

export async function insertApiToken(
  db: DbOrTx,
  values: { name: string; scope: TokenScopeKind; tenantId: string | null; tokenHash: string; createdBy: string },
): Promise<ApiTokenRow> {
  const [row] = await db.insert(apiTokens).values(values).returning();
  return row!;
}

/** Every token with its tenant's slug, newest first. */
export function listApiTokens(db: DbOrTx): Promise<{ token: ApiTokenRow; tenantSlug: string | null }[]> {
  return db
    .select({ token: apiTokens, tenantSlug: tenants.slug })
    .from(apiTokens)
    .leftJoin(tenants, eq(tenants.id, apiTokens.tenantId))
    .orderBy(desc(apiTokens.createdAt));
}

/** Revokes the token unless it already is; every replica drops it from its cache when this commits. */
export async function revokeApiToken(tx: Tx, id: string): Promise<ApiTokenRow | undefined> {
  const [revoked] = await tx
    .update(apiTokens)
    .set({ revokedAt: new Date() })
    .where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt)))
    .returning();
  if (revoked) await tx.execute(sql`select pg_notify(${TOKEN_CHANNEL}, ${revoked.tokenHash})`);
  return revoked;
}
