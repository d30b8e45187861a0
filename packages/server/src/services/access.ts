/**
 * Authorization rules, in one place, and the lookups that apply them: a service finds a
 * tenant, workflow, release or bundle through here, as the principal may see it.
 * Another tenant's resources are "not found", never "forbidden".
 */
import { storedBundle } from '../db/queries/bundles.js';
import type { DbOrTx } from '../db/client.js';
import type { WorkflowRelease } from '../db/queries/releases.js';
import { type TenantRow, tenantByRef } from '../db/queries/tenants.js';
import { type WorkflowRow, workflowByRef } from '../db/queries/workflows.js';
import { RegistryError, notFound } from '../errors.js';
import type { Deps, Principal } from './context.js';

export function requireAdmin(p: Principal): void {
  if (p.scope !== 'admin') throw new RegistryError('FORBIDDEN', 'this needs an admin token');
}

/** Reading: admins and the orchestrator see everything, a tenant token only its tenant, an agent token nothing. */
export function assertCanRead(p: Principal, tenantId: string, what: string): void {
  if ((p.scope === 'tenant' && p.tenantId !== tenantId) || p.scope === 'agent') throw notFound(what);
}

/** Spawning and reading executions: the orchestrator's job (and admins'). */
export function requireOrchestrator(p: Principal): void {
  if (p.scope !== 'admin' && p.scope !== 'orchestrator') throw new RegistryError('FORBIDDEN', 'this needs an orchestrator or admin token');
}

/** Changing a tenant's workflows: admins and that tenant's tokens; the orchestrator only reads. */
export function assertCanWrite(p: Principal, tenantId: string, what: string): void {
  assertCanRead(p, tenantId, what);
  if (p.scope === 'orchestrator') {
    throw new RegistryError('FORBIDDEN', 'orchestrator tokens can read and resolve, not change workflows', 'use an admin or tenant token');
  }
}

/**
 * A reference that names a tenant the principal may not see (a slug, or the tenant part of
 * `tenant/name`; a tenant's id) is refused here, before anything is looked up: whether it
 * exists must not change what the caller gets back, nor how long it takes. A workflow id
 * names no tenant: it is looked up and refused after, the same way whether it exists or not.
 */
function assertRefInScope(p: Principal, tenantOfRef: string | undefined, what: string): void {
  if (p.scope === 'agent') throw notFound(what);
  if (p.scope === 'tenant' && tenantOfRef !== undefined && tenantOfRef !== p.tenantSlug && tenantOfRef !== p.tenantId) {
    throw notFound(what);
  }
}

/** The tenant a workflow ref names (`tenant/name`), or undefined for an id. */
const tenantOfWorkflowRef = (ref: string) => (ref.includes('/') ? ref.slice(0, ref.indexOf('/')) : undefined);

/** A tenant by id or slug that the principal may see. */
export async function findTenant(db: DbOrTx, p: Principal, ref: string): Promise<TenantRow> {
  assertRefInScope(p, ref, `tenant "${ref}"`);
  const row = await tenantByRef(db, ref);
  if (!row) throw notFound(`tenant "${ref}"`);
  assertCanRead(p, row.id, `tenant "${ref}"`);
  return row;
}

/** `tenant/name` or a workflow id, as the principal may see it; anything else is "not found". */
export async function findWorkflow(db: DbOrTx, p: Principal, ref: string): Promise<WorkflowRow> {
  assertRefInScope(p, tenantOfWorkflowRef(ref), `workflow "${ref}"`);
  const row = await workflowByRef(db, ref);
  if (!row) throw notFound(`workflow "${ref}"`);
  assertCanRead(p, row.tenantId, `workflow "${ref}"`);
  return row;
}

export async function findWritableWorkflow(db: DbOrTx, p: Principal, ref: string): Promise<WorkflowRow> {
  const wf = await findWorkflow(db, p, ref);
  assertCanWrite(p, wf.tenantId, `workflow "${ref}"`);
  return wf;
}

/**
 * The workflow's release state as the principal may see it (from the release cache, which
 * keeps misses as it keeps hits); else NOT_FOUND.
 */
export async function findRelease(deps: Pick<Deps, 'db' | 'caches'>, p: Principal, ref: string): Promise<WorkflowRelease> {
  assertRefInScope(p, tenantOfWorkflowRef(ref), `workflow "${ref}"`);
  const release = await deps.caches.releases.lookup(deps.db, ref);
  if (!release) throw notFound(`workflow "${ref}"`);
  assertCanRead(p, release.workflow.tenantId, `workflow "${ref}"`);
  return release;
}

/**
 * Stored bundles a principal may name by hash: any for admin and orchestrator, else those
 * its tenant's versions use. A bundle gc removed is not there.
 */
export function bundleVisibleTo(db: DbOrTx, p: Principal, hash: string): Promise<{ size: number; treeDigest: string | null } | null> {
  return storedBundle(db, hash, p.scope === 'tenant' ? p.tenantId : null);
}
