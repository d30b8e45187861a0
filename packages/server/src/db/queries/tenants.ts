/** Tenants. Like every module under db/queries: plain queries, no authorization (services/access.ts). */
import { asc, eq } from 'drizzle-orm';
import type { DbOrTx } from '../client.js';
import { tenants } from '../schema.js';

export type TenantRow = typeof tenants.$inferSelect;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A tenant by id or by slug. */
export async function tenantByRef(db: DbOrTx, ref: string): Promise<TenantRow | undefined> {
  const [row] = await db
    .select()
    .from(tenants)
    .where(UUID_RE.test(ref) ? eq(tenants.id, ref) : eq(tenants.slug, ref));
  return row;
}

/** The new tenant, or undefined when the slug is taken. */
export async function insertTenant(db: DbOrTx, slug: string): Promise<TenantRow | undefined> {
  const [row] = await db.insert(tenants).values({ slug }).onConflictDoNothing().returning();
  return row;
}

/** All tenants by slug, or only `onlyId`. */
export function listTenantRows(db: DbOrTx, onlyId?: string): Promise<TenantRow[]> {
  return db
    .select()
    .from(tenants)
    .where(onlyId === undefined ? undefined : eq(tenants.id, onlyId))
    .orderBy(asc(tenants.slug));
}

export async function tenantSlugById(db: DbOrTx, id: string): Promise<string | undefined> {
  const [row] = await db.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.id, id));
  return row?.slug;
}

export async function tenantIdBySlug(db: DbOrTx, slug: string): Promise<string | undefined> {
  const [row] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.slug, slug));
  return row?.id;
}
