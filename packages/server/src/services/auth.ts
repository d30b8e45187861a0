/**
 * Bearer tokens. Minted tokens are `swt_` + 256 random bits; only their sha256 is
 * stored, so looking one up by its hash reveals nothing a timing attack could use.
 * The bootstrap admin token from the environment is compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { and, desc, eq, gt, isNull } from 'drizzle-orm';
import type { ApiToken, CreatedApiToken, TokenScope } from '@swarm/sdk/contract';
import { apiTokens, executions, tenants } from '../db/schema.js';
import { RegistryError, notFound } from '../errors.js';
import { requireAdmin } from './access.js';
import type { Deps, Principal } from './context.js';
import { notifyTokenRevoked } from './release-cache.js';

const TOKEN_PREFIX = 'swt_';
/** Agent tokens: minted per execution by a spawn, stored hashed on the execution row. */
const AGENT_TOKEN_PREFIX = 'swa_';
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function generateAgentToken(): { token: string; hash: string } {
  const token = AGENT_TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { token, hash: sha256(token) };
}

/** Resolves an Authorization header to a principal, or null for anything not a live token. */
export async function authenticate(
  deps: Pick<Deps, 'db' | 'caches'> & { adminTokenHash: Buffer },
  header: string | undefined,
): Promise<Principal | null> {
  const match = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header ?? '');
  if (!match) return null;
  const token = match[1] as string;
  const hash = createHash('sha256').update(token).digest();
  if (timingSafeEqual(hash, deps.adminTokenHash)) {
    return { tokenId: null, name: 'admin (bootstrap)', scope: 'admin', tenantId: null };
  }
  if (token.startsWith(AGENT_TOKEN_PREFIX)) {
    const [execution] = await deps.db
      .select({ id: executions.id })
      .from(executions)
      .where(and(eq(executions.agentTokenHash, hash.toString('hex')), gt(executions.agentTokenExpiresAt, new Date())))
      .limit(1);
    return execution ? { tokenId: null, name: `agent of execution ${execution.id}`, scope: 'agent', tenantId: null, executionId: execution.id } : null;
  }
  if (!token.startsWith(TOKEN_PREFIX)) return null;
  // Cached per replica; a revocation drops the entry everywhere (see revokeToken).
  const key = hash.toString('hex');
  return deps.caches.principals.load(
    key,
    async () => {
      const [row] = await deps.db
        .select({ id: apiTokens.id, name: apiTokens.name, scope: apiTokens.scope, tenantId: apiTokens.tenantId })
        .from(apiTokens)
        .where(and(eq(apiTokens.tokenHash, key), isNull(apiTokens.revokedAt)))
        .limit(1);
      return row ? { tokenId: row.id, name: row.name, scope: row.scope, tenantId: row.tenantId } : null;
    },
    () => key,
  );
}

export function hashAdminToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

type TokenRow = typeof apiTokens.$inferSelect & { tenantSlug: string | null };

function toApiToken(row: TokenRow): ApiToken {
  return {
    id: row.id,
    name: row.name,
    scope: (row.scope === 'tenant' ? `tenant:${row.tenantSlug}` : row.scope) as TokenScope,
    createdAt: row.createdAt.toISOString(),
    revokedAt: row.revokedAt?.toISOString() ?? null,
  };
}

export async function createToken(
  deps: Deps,
  p: Principal,
  input: { scope: TokenScope; name?: string | undefined },
): Promise<CreatedApiToken> {
  requireAdmin(p);
  let tenantId: string | null = null;
  let tenantSlug: string | null = null;
  let scope: 'admin' | 'orchestrator' | 'tenant';
  if (input.scope.startsWith('tenant:')) {
    tenantSlug = input.scope.slice('tenant:'.length);
    const [t] = await deps.db.select({ id: tenants.id }).from(tenants).where(eq(tenants.slug, tenantSlug));
    if (!t) throw new RegistryError('NOT_FOUND', `tenant "${tenantSlug}" not found`, 'create it first: swarm tenants create <slug>');
    tenantId = t.id;
    scope = 'tenant';
  } else {
    scope = input.scope as 'admin' | 'orchestrator';
  }
  const token = generateToken();
  const [row] = await deps.db
    .insert(apiTokens)
    .values({ name: input.name ?? `${input.scope} token`, scope, tenantId, tokenHash: sha256(token), createdBy: p.name })
    .returning();
  return { ...toApiToken({ ...row!, tenantSlug }), token };
}

export async function listTokens(deps: Deps, p: Principal): Promise<ApiToken[]> {
  requireAdmin(p);
  const rows = await deps.db
    .select({ token: apiTokens, tenantSlug: tenants.slug })
    .from(apiTokens)
    .leftJoin(tenants, eq(tenants.id, apiTokens.tenantId))
    .orderBy(desc(apiTokens.createdAt));
  return rows.map((r) => toApiToken({ ...r.token, tenantSlug: r.tenantSlug }));
}

export async function revokeToken(deps: Deps, p: Principal, input: { id: string }): Promise<ApiToken> {
  requireAdmin(p);
  const row = await deps.db.transaction(async (tx) => {
    const [revoked] = await tx
      .update(apiTokens)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiTokens.id, input.id), isNull(apiTokens.revokedAt)))
      .returning();
    // Every replica drops the token from its cache when this commits; this one at once.
    if (revoked) await notifyTokenRevoked(tx, revoked.tokenHash);
    return revoked;
  });
  if (!row) throw notFound('active token');
  deps.caches.principals.invalidate(row.tokenHash);
  const [t] = row.tenantId ? await deps.db.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.id, row.tenantId)) : [];
  return toApiToken({ ...row, tenantSlug: t?.slug ?? null });
}
