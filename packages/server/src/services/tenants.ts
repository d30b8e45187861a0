import { asc, eq } from 'drizzle-orm';
import type { Tenant } from '@swarm/sdk/contract';
import { tenants } from '../db/schema.js';
import type { DbOrTx } from '../db/client.js';
import { RegistryError, notFound } from '../errors.js';
import { assertCanRead, requireAdmin } from './access.js';
import type { Deps, Principal } from './context.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const toTenant = (row: typeof tenants.$inferSelect): Tenant => ({
  id: row.id,
  slug: row.slug,
  createdAt: row.createdAt.toISOString(),
});

/** Finds a tenant by id or slug that the principal may see. */
export async function findTenant(db: DbOrTx, p: Principal, ref: string): Promise<typeof tenants.$inferSelect> {
  const [row] = await db
    .select()
    .from(tenants)
    .where(UUID_RE.test(ref) ? eq(tenants.id, ref) : eq(tenants.slug, ref));
  if (!row) throw notFound(`tenant "${ref}"`);
  assertCanRead(p, row.id, `tenant "${ref}"`);
  return row;
}

export async function createTenant(deps: Deps, p: Principal, input: { slug: string }): Promise<Tenant> {
  requireAdmin(p);
  const [row] = await deps.db.insert(tenants).values({ slug: input.slug }).onConflictDoNothing().returning();
  if (!row) throw new RegistryError('CONFLICT', `tenant "${input.slug}" already exists`);
  return toTenant(row);
}

export async function getTenant(deps: Deps, p: Principal, input: { tenant: string }): Promise<Tenant> {
  return toTenant(await findTenant(deps.db, p, input.tenant));
}

export async function listTenants(deps: Deps, p: Principal): Promise<Tenant[]> {
  const rows = await deps.db
    .select()
    .from(tenants)
    .where(p.scope === 'tenant' ? eq(tenants.id, p.tenantId!) : undefined)
    .orderBy(asc(tenants.slug));
  return rows.map(toTenant);
}
