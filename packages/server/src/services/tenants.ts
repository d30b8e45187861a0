import type { Tenant } from '@swarm/sdk/contract';
import { type TenantRow, insertTenant, listTenantRows } from '../db/queries/tenants.js';
import { RegistryError } from '../errors.js';
import { findTenant, requireAdmin } from './access.js';
import type { Deps, Principal } from './context.js';

const toTenant = (row: TenantRow): Tenant => ({
  id: row.id,
  slug: row.slug,
  createdAt: row.createdAt.toISOString(),
});

export async function createTenant(deps: Deps, p: Principal, input: { slug: string }): Promise<Tenant> {
  requireAdmin(p);
  const row = await insertTenant(deps.db, input.slug);
  if (!row) throw new RegistryError('CONFLICT', `tenant "${input.slug}" already exists`);
  return toTenant(row);
}

export async function getTenant(deps: Deps, p: Principal, input: { tenant: string }): Promise<Tenant> {
  return toTenant(await findTenant(deps.db, p, input.tenant));
}

export async function listTenants(deps: Deps, p: Principal): Promise<Tenant[]> {
  const rows = await listTenantRows(deps.db, p.scope === 'tenant' ? p.tenantId! : undefined);
  return rows.map(toTenant);
}
