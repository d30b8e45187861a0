import type { Workflow } from '@swarm/sdk/contract';
import { type WorkflowRow, insertWorkflow, workflowsOfTenant } from '../db/queries/workflows.js';
import { RegistryError } from '../errors.js';
import { assertCanWrite, findTenant, findWorkflow } from './access.js';
import type { Deps, Principal } from './context.js';

const toWorkflow = (r: WorkflowRow): Workflow => ({
  id: r.id,
  tenantId: r.tenantId,
  tenant: r.tenant,
  name: r.name,
  activeVersion: r.activeVersion,
  canary: r.canaryVersion !== null && r.canaryWeight !== null ? { version: r.canaryVersion, weight: r.canaryWeight } : null,
  createdAt: r.createdAt.toISOString(),
});

export async function createWorkflow(deps: Deps, p: Principal, input: { tenant: string; name: string }): Promise<Workflow> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  assertCanWrite(p, tenant.id, `tenant "${input.tenant}"`);
  const row = await insertWorkflow(deps.db, { tenantId: tenant.id, name: input.name });
  if (!row) throw new RegistryError('CONFLICT', `workflow "${tenant.slug}/${input.name}" already exists`);
  return toWorkflow({ ...row, tenant: tenant.slug, activeVersion: null, canaryVersion: null });
}

export async function getWorkflow(deps: Deps, p: Principal, input: { workflow: string }): Promise<Workflow> {
  return toWorkflow(await findWorkflow(deps.db, p, input.workflow));
}

export async function listWorkflows(deps: Deps, p: Principal, input: { tenant: string }): Promise<Workflow[]> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  const rows = await workflowsOfTenant(deps.db, tenant.id);
  return rows.map(toWorkflow);
}
