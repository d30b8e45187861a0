import { and, asc, desc, eq } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { Workflow, WorkflowVersion } from '@swarm/sdk/contract';
import type { DbOrTx } from '../db/client.js';
import { bundles, tenants, workflowVersions, workflows } from '../db/schema.js';
import { RegistryError, notFound } from '../errors.js';
import { assertCanRead, assertCanWrite } from './access.js';
import type { Deps, Principal } from './context.js';
import { findTenant } from './tenants.js';

const activeVersion = alias(workflowVersions, 'active_version');
const canaryVersion = alias(workflowVersions, 'canary_version');

export type WorkflowRow = {
  id: string;
  tenantId: string;
  tenant: string;
  name: string;
  activeVersionId: string | null;
  activeVersion: number | null;
  canaryVersionId: string | null;
  canaryVersion: number | null;
  canaryWeight: number | null;
  createdAt: Date;
};

const workflowColumns = {
  id: workflows.id,
  tenantId: workflows.tenantId,
  tenant: tenants.slug,
  name: workflows.name,
  activeVersionId: workflows.activeVersionId,
  activeVersion: activeVersion.version,
  canaryVersionId: workflows.canaryVersionId,
  canaryVersion: canaryVersion.version,
  canaryWeight: workflows.canaryWeight,
  createdAt: workflows.createdAt,
};

export const toWorkflow = (r: WorkflowRow): Workflow => ({
  id: r.id,
  tenantId: r.tenantId,
  tenant: r.tenant,
  name: r.name,
  activeVersion: r.activeVersion,
  canary: r.canaryVersion !== null && r.canaryWeight !== null ? { version: r.canaryVersion, weight: r.canaryWeight } : null,
  createdAt: r.createdAt.toISOString(),
});

/** The workflow joined with its active and canary versions' numbers. */
const selectWorkflows = (db: DbOrTx) =>
  db
    .select(workflowColumns)
    .from(workflows)
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .leftJoin(activeVersion, eq(activeVersion.id, workflows.activeVersionId))
    .leftJoin(canaryVersion, eq(canaryVersion.id, workflows.canaryVersionId));

/** `tenant/name` or a workflow id, as the principal may see it; anything else is "not found". */
export async function findWorkflow(db: DbOrTx, p: Principal, ref: string): Promise<WorkflowRow> {
  const slash = ref.indexOf('/');
  const where =
    slash === -1
      ? eq(workflows.id, ref)
      : and(eq(tenants.slug, ref.slice(0, slash)), eq(workflows.name, ref.slice(slash + 1)));
  const [row] = await selectWorkflows(db).where(where);
  if (!row) throw notFound(`workflow "${ref}"`);
  assertCanRead(p, row.tenantId, `workflow "${ref}"`);
  return row;
}

/** A workflow by id, without an access check: for services that already checked it. */
export async function loadWorkflow(db: DbOrTx, id: string): Promise<WorkflowRow> {
  const [row] = await selectWorkflows(db).where(eq(workflows.id, id));
  if (!row) throw notFound(`workflow ${id}`);
  return row;
}

export async function findWritableWorkflow(db: DbOrTx, p: Principal, ref: string): Promise<WorkflowRow> {
  const wf = await findWorkflow(db, p, ref);
  assertCanWrite(p, wf.tenantId, `workflow "${ref}"`);
  return wf;
}

export async function createWorkflow(deps: Deps, p: Principal, input: { tenant: string; name: string }): Promise<Workflow> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  assertCanWrite(p, tenant.id, `tenant "${input.tenant}"`);
  const [row] = await deps.db
    .insert(workflows)
    .values({ tenantId: tenant.id, name: input.name })
    .onConflictDoNothing()
    .returning();
  if (!row) throw new RegistryError('CONFLICT', `workflow "${tenant.slug}/${input.name}" already exists`);
  return toWorkflow({ ...row, tenant: tenant.slug, activeVersion: null, canaryVersion: null });
}

export async function getWorkflow(deps: Deps, p: Principal, input: { workflow: string }): Promise<Workflow> {
  return toWorkflow(await findWorkflow(deps.db, p, input.workflow));
}

export async function listWorkflows(deps: Deps, p: Principal, input: { tenant: string }): Promise<Workflow[]> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  const rows = await selectWorkflows(deps.db)
    .where(eq(workflows.tenantId, tenant.id))
    .orderBy(asc(workflows.name));
  return rows.map(toWorkflow);
}

/** Version history, newest first, with who registered each and why. */
export async function listVersions(deps: Deps, p: Principal, input: { workflow: string }): Promise<WorkflowVersion[]> {
  const wf = await findWorkflow(deps.db, p, input.workflow);
  const rows = await deps.db
    .select({ v: workflowVersions, size: bundles.size })
    .from(workflowVersions)
    .innerJoin(bundles, eq(bundles.hash, workflowVersions.bundleHash))
    .where(eq(workflowVersions.workflowId, wf.id))
    .orderBy(desc(workflowVersions.version));
  return rows.map((r) => toWorkflowVersion(r.v, r.size, wf));
}

/** Which versions a workflow currently releases: marks a version active or canary. */
export type ReleasePointers = { activeVersionId: string | null; canaryVersionId: string | null };

export function toWorkflowVersion(v: typeof workflowVersions.$inferSelect, size: number, release: ReleasePointers): WorkflowVersion {
  return {
    id: v.id,
    workflowId: v.workflowId,
    version: v.version,
    bundleHash: v.bundleHash,
    size,
    message: v.message,
    createdBy: v.createdBy,
    createdAt: v.createdAt.toISOString(),
    active: v.id === release.activeVersionId,
    canary: v.id === release.canaryVersionId,
    prunedAt: v.prunedAt?.toISOString() ?? null,
  };
}
