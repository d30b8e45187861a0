import type { Workflow } from '@swarm/sdk/contract';
import { notifyReleaseChanged } from '../db/queries/releases.js';
import { type WorkflowRow, insertWorkflow, setWorkflowTimeout, workflowsOfTenant } from '../db/queries/workflows.js';
import { RegistryError } from '../errors.js';
import { assertCanWrite, findTenant, findWorkflow, findWritableWorkflow } from './access.js';
import type { Deps, Principal } from './context.js';

const toWorkflow = (r: WorkflowRow): Workflow => ({
  id: r.id,
  tenantId: r.tenantId,
  tenant: r.tenant,
  name: r.name,
  activeVersion: r.activeVersion,
  canary: r.canaryVersion !== null && r.canaryWeight !== null ? { version: r.canaryVersion, weight: r.canaryWeight } : null,
  timeoutSeconds: r.timeoutSeconds,
  createdAt: r.createdAt.toISOString(),
});

export async function createWorkflow(deps: Deps, p: Principal, input: { tenant: string; name: string }): Promise<Workflow> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  assertCanWrite(p, tenant.id, `tenant "${input.tenant}"`);
  const ref = `${tenant.slug}/${input.name}`;
  // The release cache keeps misses: every replica drops "no such workflow" for its id and name at commit, this one at once.
  const row = await deps.db.transaction(async (tx) => {
    const inserted = await insertWorkflow(tx, { tenantId: tenant.id, name: input.name });
    if (inserted) for (const key of [inserted.id, ref]) await notifyReleaseChanged(tx, key);
    return inserted;
  });
  for (const key of [row?.id, ref]) if (key) deps.caches.releases.invalidate(key);
  if (!row) throw new RegistryError('CONFLICT', `workflow "${ref}" already exists`);
  return toWorkflow({ ...row, tenant: tenant.slug, activeVersion: null, canaryVersion: null });
}

/** Changes a workflow's settings (admins and its tenant): its executions' default timeout. */
export async function setWorkflow(deps: Deps, p: Principal, input: { workflow: string; timeoutSeconds: number | null }): Promise<Workflow> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  await setWorkflowTimeout(deps.db, wf.id, input.timeoutSeconds);
  return toWorkflow({ ...wf, timeoutSeconds: input.timeoutSeconds });
}

export async function getWorkflow(deps: Deps, p: Principal, input: { workflow: string }): Promise<Workflow> {
  return toWorkflow(await findWorkflow(deps.db, p, input.workflow));
}

export async function listWorkflows(deps: Deps, p: Principal, input: { tenant: string }): Promise<Workflow[]> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  const rows = await workflowsOfTenant(deps.db, tenant.id);
  return rows.map(toWorkflow);
}
