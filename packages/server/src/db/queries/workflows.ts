/** Workflows, found by id or `tenant/name`, and the row lock every release change takes. */
import { and, asc, eq, type SQL } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import { notFound } from '../../errors.js';
import type { DbOrTx, Tx } from '../client.js';
import { tenants, workflowVersions, workflows } from '../schema.js';

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
  timeoutSeconds: number | null;
  createdAt: Date;
};

/** The workflows row itself, as a release change locks and reads it. */
export type WorkflowLock = typeof workflows.$inferSelect;

/**
 * `tenant/name` or a workflow id, as a condition on workflows joined with tenants (the
 * one place a workflow reference becomes SQL).
 */
export function workflowRefWhere(ref: string): SQL | undefined {
  const slash = ref.indexOf('/');
  return slash === -1 ? eq(workflows.id, ref) : and(eq(tenants.slug, ref.slice(0, slash)), eq(workflows.name, ref.slice(slash + 1)));
}

const activeVersion = alias(workflowVersions, 'active_version');
const canaryVersion = alias(workflowVersions, 'canary_version');

/** The workflow joined with its tenant's slug and its active and canary versions' numbers. */
const selectWorkflows = (db: DbOrTx) =>
  db
    .select({
      id: workflows.id,
      tenantId: workflows.tenantId,
      tenant: tenants.slug,
      name: workflows.name,
      activeVersionId: workflows.activeVersionId,
      activeVersion: activeVersion.version,
      canaryVersionId: workflows.canaryVersionId,
      canaryVersion: canaryVersion.version,
      canaryWeight: workflows.canaryWeight,
      timeoutSeconds: workflows.timeoutSeconds,
      createdAt: workflows.createdAt,
    })
    .from(workflows)
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .leftJoin(activeVersion, eq(activeVersion.id, workflows.activeVersionId))
    .leftJoin(canaryVersion, eq(canaryVersion.id, workflows.canaryVersionId));

export async function workflowByRef(db: DbOrTx, ref: string): Promise<WorkflowRow | undefined> {
  const [row] = await selectWorkflows(db).where(workflowRefWhere(ref));
  return row;
}

export async function workflowById(db: DbOrTx, id: string): Promise<WorkflowRow | undefined> {
  const [row] = await selectWorkflows(db).where(eq(workflows.id, id));
  return row;
}

export function workflowsOfTenant(db: DbOrTx, tenantId: string): Promise<WorkflowRow[]> {
  return selectWorkflows(db).where(eq(workflows.tenantId, tenantId)).orderBy(asc(workflows.name));
}

/** The new workflow's row, or undefined when the tenant already has one of that name. */
export async function insertWorkflow(db: DbOrTx, values: { tenantId: string; name: string }): Promise<WorkflowLock | undefined> {
  const [row] = await db.insert(workflows).values(values).onConflictDoNothing().returning();
  return row;
}

/**
 * Locks the workflow's row (FOR UPDATE) for the rest of the transaction: release changes,
 * version registrations and gc's retiring of versions take it, so they happen one at a
 * time per workflow, and spawns (FOR KEY SHARE) never run beside them.
 */
export async function lockWorkflow(tx: Tx, workflowId: string): Promise<WorkflowLock> {
  const [row] = await tx.select().from(workflows).where(eq(workflows.id, workflowId)).for('update');
  if (!row) throw notFound('workflow');
  return row;
}

/** Sets a workflow's default execution timeout (null: none). */
export async function setWorkflowTimeout(db: DbOrTx, id: string, timeoutSeconds: number | null): Promise<void> {
  await db.update(workflows).set({ timeoutSeconds }).where(eq(workflows.id, id));
}
