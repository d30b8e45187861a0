/**
 * Bearer tokens. Minted tokens are `swt_` + 256 random bits; only their sha256 is
 * stored, so looking one up by its hash reveals nothing a timing attack could use.
 * The bootstrap admin token from the environment is compared in constant time.
 */
import { createHash, hash as digest, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiToken, CreatedApiToken, TokenScope, TokenScopeKind } from '@swarm/sdk/contract';
import { tenantIdBySlug, tenantSlugById } from '../db/queries/tenants.js';
import {
  type ApiTokenRow,
  executionOfAgentCredential,
  insertApiToken,
  listApiTokens,
  liveApiToken,
  revokeApiToken,
} from '../db/queries/tokens.js';
import { RegistryError, notFound } from '../errors.js';
import { requireAdmin } from './access.js';
import type { Deps, Principal } from './context.js';

const TOKEN_PREFIX = 'swt_';
/**
 * Agent credentials, minted per execution and stored hashed on its row: the bootstrap
 * token a spawn puts in the VM metadata (`swa_`), and the session the agent trades it
 * for (`sws_`), which only the agent's memory holds.
 */
const AGENT_TOKEN_PREFIX = 'swa_';
const AGENT_SESSION_PREFIX = 'sws_';
const sha256 = (s: string) => digest('sha256', s, 'hex');

export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function generateAgentToken(kind: 'bootstrap' | 'session'): { token: string; hash: string } {
  return generateAgentTokens(kind, 1)[0]!;
}

/**
 * `count` agent tokens (256 random bits each) from ONE read of the random source: a
 * spawnMany of 1,000 pays one call instead of 1,000 (a call costs more than the bits).
 */
export function generateAgentTokens(kind: 'bootstrap' | 'session', count: number): { token: string; hash: string }[] {
  const prefix = kind === 'bootstrap' ? AGENT_TOKEN_PREFIX : AGENT_SESSION_PREFIX;
  const random = randomBytes(32 * count);
  return Array.from({ length: count }, (_, i) => {
    const token = prefix + random.toString('base64url', 32 * i, 32 * (i + 1));
    return { token, hash: sha256(token) };
  });
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
  const agentCredential = token.startsWith(AGENT_TOKEN_PREFIX) ? 'bootstrap' : token.startsWith(AGENT_SESSION_PREFIX) ? 'session' : null;
  if (agentCredential) {
    // Never cached: an exchange or the execution's end must kill the credential on every replica at once.
    const execution = await executionOfAgentCredential(deps.db, agentCredential, hash.toString('hex'));
    return execution
      ? {
          tokenId: null,
          name: `agent of execution ${execution.id}`,
          scope: 'agent',
          tenantId: null,
          executionId: execution.id,
          agentCredential,
        }
      : null;
  }
  if (!token.startsWith(TOKEN_PREFIX)) return null;
  // Cached per replica; a revocation drops the entry everywhere (see revokeToken).
  const key = hash.toString('hex');
  return deps.caches.principals.load(
    key,
    async () => {
      const row = await liveApiToken(deps.db, key);
      return row
        ? { tokenId: row.id, name: row.name, scope: row.scope, tenantId: row.tenantId, tenantSlug: row.tenantSlug ?? undefined }
        : null;
    },
    () => key,
  );
}

export function hashAdminToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

type TokenRow = ApiTokenRow & { tenantSlug: string | null };

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
  let scope: TokenScopeKind;
  if (input.scope.startsWith('tenant:')) {
    tenantSlug = input.scope.slice('tenant:'.length);
    const id = await tenantIdBySlug(deps.db, tenantSlug);
    if (!id) throw new RegistryError('NOT_FOUND', `tenant "${tenantSlug}" not found`, 'create it first: swarm tenants create <slug>');
    tenantId = id;
    scope = 'tenant';
  } else {
    scope = input.scope as Exclude<TokenScopeKind, 'tenant'>;
  }
  const token = generateToken();
  const row = await insertApiToken(deps.db, {
    name: input.name ?? `${input.scope} token`,
    scope,
    tenantId,
    tokenHash: sha256(token),
    createdBy: p.name,
  });
  return { ...toApiToken({ ...row, tenantSlug }), token };
}

export async function listTokens(deps: Deps, p: Principal): Promise<ApiToken[]> {
  requireAdmin(p);
  const rows = await listApiTokens(deps.db);
  return rows.map((r) => toApiToken({ ...r.token, tenantSlug: r.tenantSlug }));
}

export async function revokeToken(deps: Deps, p: Principal, input: { id: string }): Promise<ApiToken> {
  requireAdmin(p);
  const row = await deps.db.transaction((tx) => revokeApiToken(tx, input.id));
  if (!row) throw notFound('active token');
  // Every replica drops the token from its cache when the revocation commits; this one at once.
  deps.caches.principals.invalidate(row.tokenHash);
  const tenantSlug = row.tenantId ? await tenantSlugById(deps.db, row.tenantId) : undefined;
  return toApiToken({ ...row, tenantSlug: tenantSlug ?? null });
}
