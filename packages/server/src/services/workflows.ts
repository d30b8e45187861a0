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

export type WorkflowRow = {
  id: string;
  tenantId: string;
  tenant: string;
  name: string;
  activeVersionId: string | null;
  activeVersion: number | null;
  createdAt: Date;
};

const workflowColumns = {
  id: workflows.id,
  tenantId: workflows.tenantId,
  tenant: tenants.slug,
  name: workflows.name,
  activeVersionId: workflows.activeVersionId,
  activeVersion: activeVersion.version,
  createdAt: workflows.createdAt,
};

export const toWorkflow = (r: WorkflowRow): Workflow => ({
  id: r.id,
  tenantId: r.tenantId,
  tenant: r.tenant,
  name: r.name,
  activeVersion: r.activeVersion,
  createdAt: r.createdAt.toISOString(),
});

/** `tenant/name` or a workflow id, as the principal may see it; anything else is "not found". */
export async function findWorkflow(db: DbOrTx, p: Principal, ref: string): Promise<WorkflowRow> {
  const slash = ref.indexOf('/');
  const where =
    slash === -1
      ? eq(workflows.id, ref)
      : and(eq(tenants.slug, ref.slice(0, slash)), eq(workflows.name, ref.slice(slash + 1)));
  const [row] = await db
    .select(workflowColumns)
    .from(workflows)
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .leftJoin(activeVersion, eq(activeVersion.id, workflows.activeVersionId))
    .where(where);
  if (!row) throw notFound(`workflow "${ref}"`);
  assertCanRead(p, row.tenantId, `workflow "${ref}"`);
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
  return toWorkflow({ ...row, tenant: tenant.slug, activeVersion: null });
}

export async function getWorkflow(deps: Deps, p: Principal, input: { workflow: string }): Promise<Workflow> {
  return toWorkflow(await findWorkflow(deps.db, p, input.workflow));
}

export async function listWorkflows(deps: Deps, p: Principal, input: { tenant: string }): Promise<Workflow[]> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  const rows = await deps.db
    .select(workflowColumns)
    .from(workflows)
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .leftJoin(activeVersion, eq(activeVersion.id, workflows.activeVersionId))
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
  return rows.map((r) => toWorkflowVersion(r.v, r.size, wf.activeVersionId));
}

export function toWorkflowVersion(
  v: typeof workflowVersions.$inferSelect,
  size: number,
  activeVersionId: string | null,
): WorkflowVersion {
  return {
    id: v.id,
    workflowId: v.workflowId,
    version: v.version,
    bundleHash: v.bundleHash,
    size,
    message: v.message,
    createdBy: v.createdBy,
    createdAt: v.createdAt.toISOString(),
    active: v.id === activeVersionId,
  };
}
