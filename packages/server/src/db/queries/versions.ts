/** Workflow versions: numbered 1, 2, 3… per workflow, immutable but for gc's `pruned_at`. */
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx, Tx } from '../client.js';
import { bundles, executions, tenants, workflowVersions, workflows } from '../schema.js';

export type VersionRow = typeof workflowVersions.$inferSelect;

export async function versionByNumber(db: DbOrTx, workflowId: string, version: number): Promise<VersionRow | undefined> {
  const [v] = await db
    .select()
    .from(workflowVersions)
    .where(and(eq(workflowVersions.workflowId, workflowId), eq(workflowVersions.version, version)));
  return v;
}

export async function versionById(db: DbOrTx, id: string): Promise<VersionRow | undefined> {
  const [v] = await db.select().from(workflowVersions).where(eq(workflowVersions.id, id));
  return v;
}

export async function newestVersion(db: DbOrTx, workflowId: string): Promise<VersionRow | undefined> {
  const [v] = await db
    .select()
    .from(workflowVersions)
    .where(eq(workflowVersions.workflowId, workflowId))
    .orderBy(desc(workflowVersions.version))
    .limit(1);
  return v;
}

export async function insertVersion(
  tx: Tx,
  values: { workflowId: string; version: number; bundleHash: string; message?: string | undefined; createdBy: string },
): Promise<VersionRow> {
  const [v] = await tx.insert(workflowVersions).values(values).returning();
  return v!;
}

/** A workflow's versions with their bundles' sizes and tree digests, newest first. */
export function versionsWithSize(db: DbOrTx, workflowId: string): Promise<{ v: VersionRow; size: number; treeDigest: string | null }[]> {
  return db
    .select({ v: workflowVersions, size: bundles.size, treeDigest: bundles.treeDigest })
    .from(workflowVersions)
    .innerJoin(bundles, eq(bundles.hash, workflowVersions.bundleHash))
    .where(eq(workflowVersions.workflowId, workflowId))
    .orderBy(desc(workflowVersions.version));
}

/** Retention's cut-offs: keep the newest `keep` versions of each workflow, and any younger than `olderThanSeconds`. */
export type Retention = { keep: number; olderThanSeconds: number };

/** SQL for "version v may be retired" (over workflow_versions joined with workflows). */
function prunable({ keep, olderThanSeconds }: Retention) {
  return sql`${workflowVersions.prunedAt} is null
    and ${workflowVersions.createdAt} < now() - make_interval(secs => ${olderThanSeconds})
    and (select count(*) from ${workflowVersions} newer
         where newer.workflow_id = ${workflowVersions.workflowId} and newer.version > ${workflowVersions.version}) >= ${keep}
    and ${workflowVersions.id} is distinct from ${workflows.activeVersionId}
    and ${workflowVersions.id} is distinct from ${workflows.canaryVersionId}
    and not exists (select 1 from ${executions}
         where ${executions.versionId} = ${workflowVersions.id} and ${executions.status} in ('pending', 'booting', 'running'))`;
}

/** Versions retention would retire, across all workflows, in `tenant/name` and version order. */
export function pruneCandidates(db: DbOrTx, retention: Retention) {
  return db
    .select({
      id: workflowVersions.id,
      workflowId: workflows.id,
      ref: sql<string>`${tenants.slug} || '/' || ${workflows.name}`,
      version: workflowVersions.version,
      bundleHash: workflowVersions.bundleHash,
    })
    .from(workflowVersions)
    .innerJoin(workflows, eq(workflows.id, workflowVersions.workflowId))
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .where(prunable(retention))
    .orderBy(tenants.slug, workflows.name, workflowVersions.version);
}

/** Retires the workflow's prunable versions, checked again in this statement (the caller holds the workflow's lock). */
export function pruneVersionsOf(tx: Tx, workflowId: string, retention: Retention): Promise<{ version: number; bundleHash: string }[]> {
  const ids = tx
    .select({ id: workflowVersions.id })
    .from(workflowVersions)
    .innerJoin(workflows, eq(workflows.id, workflowVersions.workflowId))
    .where(and(eq(workflowVersions.workflowId, workflowId), prunable(retention)));
  return tx
    .update(workflowVersions)
    .set({ prunedAt: sql`now()` })
    .where(inArray(workflowVersions.id, ids))
    .returning({ version: workflowVersions.version, bundleHash: workflowVersions.bundleHash });
}
