/**
 * Retention and garbage collection (`swarm gc`, admin only).
 *
 * 1. Versions beyond the newest `keep` of each workflow (and older than `olderThan`) are
 *    retired: `pruned_at` is set, the row stays for history. Never the active or the
 *    canary version, never one an unfinished execution uses. Per workflow under the
 *    workflow's lock, the same lock release changes and spawns take.
 * 2. Bundles no live version references and older than the grace period are deleted from
 *    the store; the row stays marked deleted while pruned versions name it.
 * 3. Objects under blobs/ without a live bundle row (a crash between storing and
 *    registering), once older than the grace period, and temporary upload objects older
 *    than SWARM_UPLOAD_SWEEP_AFTER_SECONDS, as the start-up sweep does.
 *
 * The race with uploads: deciding to delete a bundle and deleting its object happen under
 * the bundle's advisory lock (versions.lockBundle), held on a connection of its own across
 * the row update's commit and the object's deletion. A registration takes the same lock,
 * then checks the object is in the store before it references it. So either gc deleted
 * first and the registration sees the object missing (CONFLICT: upload again, which the
 * SDK does), or the registration committed first and gc's re-check sees a live version.
 * If gc dies between the commit and the deletion, the object is merely orphaned and the
 * next run removes it.
 */
import { and, eq, inArray, isNull, lt, sql } from 'drizzle-orm';
import type { GcReport } from '@swarm/sdk/contract';
import { bundles, executions, tenants, workflowVersions, workflows } from '../db/schema.js';
import { requireAdmin } from './access.js';
import type { Deps, Principal } from './context.js';
import { lockWorkflow } from './releases.js';
import { lockBundle } from './versions.js';

export type GcInput = { dryRun: boolean; keep: number; olderThanSeconds: number };

/** Bounded work per run: a registry with more garbage than this finishes it on the next run. */
const MAX_DELETIONS_PER_RUN = 10_000;

export async function collectGarbage(deps: Deps, p: Principal, input: GcInput): Promise<GcReport> {
  requireAdmin(p);
  const report: GcReport = {
    dryRun: input.dryRun,
    prunedVersions: [],
    deletedBundles: 0,
    orphanObjects: 0,
    sweptUploads: 0,
    bytesFreed: 0,
    keptForGrace: 0,
  };
  const wouldPrune = await pruneVersions(deps, input, report);
  await deleteUnreferencedBundles(deps, input.dryRun, report, wouldPrune);
  await deleteOrphanObjects(deps, input.dryRun, report);
  if (!input.dryRun) {
    // The same age the start-up sweep uses: it must exceed the longest upload.
    const swept = await deps.store.sweepUploads(deps.config.uploadSweepAfterMs);
    report.sweptUploads = swept.objects + swept.multipart;
  }
  deps.log.info({ ...report, prunedVersions: report.prunedVersions.length, actor: p.name }, 'gc finished');
  return report;
}

/** SQL for "version v may be retired", given the run's cut-offs. */
function prunable(keep: number, olderThanSeconds: number) {
  return sql`${workflowVersions.prunedAt} is null
    and ${workflowVersions.createdAt} < now() - make_interval(secs => ${olderThanSeconds})
    and (select count(*) from ${workflowVersions} newer
         where newer.workflow_id = ${workflowVersions.workflowId} and newer.version > ${workflowVersions.version}) >= ${keep}
    and ${workflowVersions.id} is distinct from ${workflows.activeVersionId}
    and ${workflowVersions.id} is distinct from ${workflows.canaryVersionId}
    and not exists (select 1 from ${executions}
         where ${executions.versionId} = ${workflowVersions.id} and ${executions.status} in ('pending', 'booting', 'running'))`;
}

/** Retires versions; in a dry run only lists them, and returns their ids. */
async function pruneVersions(deps: Deps, input: GcInput, report: GcReport): Promise<string[]> {
  const candidates = await deps.db
    .select({ id: workflowVersions.id, workflowId: workflows.id, ref: sql<string>`${tenants.slug} || '/' || ${workflows.name}`, version: workflowVersions.version, bundleHash: workflowVersions.bundleHash })
    .from(workflowVersions)
    .innerJoin(workflows, eq(workflows.id, workflowVersions.workflowId))
    .innerJoin(tenants, eq(tenants.id, workflows.tenantId))
    .where(prunable(input.keep, input.olderThanSeconds))
    .orderBy(tenants.slug, workflows.name, workflowVersions.version);
  if (input.dryRun) {
    report.prunedVersions = candidates.map(({ ref, version, bundleHash }) => ({ workflow: ref, version, bundleHash }));
    return candidates.map((c) => c.id);
  }
  for (const workflowId of new Set(candidates.map((c) => c.workflowId))) {
    const pruned = await deps.db.transaction(async (tx) => {
      await lockWorkflow(tx, workflowId);
      // Re-checked under the lock: the release may have moved since the candidates were read.
      const ids = tx
        .select({ id: workflowVersions.id })
        .from(workflowVersions)
        .innerJoin(workflows, eq(workflows.id, workflowVersions.workflowId))
        .where(and(eq(workflowVersions.workflowId, workflowId), prunable(input.keep, input.olderThanSeconds)));
      return tx
        .update(workflowVersions)
        .set({ prunedAt: sql`now()` })
        .where(inArray(workflowVersions.id, ids))
        .returning({ version: workflowVersions.version, bundleHash: workflowVersions.bundleHash });
    });
    const ref = candidates.find((c) => c.workflowId === workflowId)!.ref;
    for (const v of pruned.sort((a, b) => a.version - b.version)) report.prunedVersions.push({ workflow: ref, ...v });
  }
  return [];
}

/**
 * SQL for "no live version uses this bundle". A dry run also counts the versions it
 * would have pruned (`asPruned`) as pruned, so it reports what a real run would free.
 */
const unreferenced = (asPruned: string[] = []) => sql`not exists (select 1 from ${workflowVersions}
  where ${workflowVersions.bundleHash} = ${bundles.hash} and ${workflowVersions.prunedAt} is null
  ${asPruned.length ? sql`and ${workflowVersions.id} not in (${sql.join(asPruned.map((id) => sql`${id}::uuid`), sql`, `)})` : sql``})`;

async function deleteUnreferencedBundles(deps: Deps, dryRun: boolean, report: GcReport, wouldPrune: string[]) {
  const graceCutoff = new Date(Date.now() - deps.config.gcGraceMs);
  const candidates = await deps.db
    .select({ hash: bundles.hash, size: bundles.size, createdAt: bundles.createdAt })
    .from(bundles)
    .where(and(isNull(bundles.deletedAt), unreferenced(wouldPrune)))
    .limit(MAX_DELETIONS_PER_RUN);
  for (const c of candidates) {
    if (c.createdAt >= graceCutoff) {
      report.keptForGrace++;
      continue;
    }
    if (dryRun) {
      report.deletedBundles++;
      report.bytesFreed += c.size;
      continue;
    }
    const deleted = await withBundleLock(deps, c.hash, async () => {
      const [row] = await deps.db
        .update(bundles)
        .set({ deletedAt: sql`now()` })
        .where(and(eq(bundles.hash, c.hash), isNull(bundles.deletedAt), lt(bundles.createdAt, graceCutoff), unreferenced()))
        .returning({ size: bundles.size });
      return row;
    });
    if (deleted) {
      report.deletedBundles++;
      report.bytesFreed += deleted.size;
    }
  }
}

/**
 * Holds the bundle's lock (in a transaction of its own connection) while `decide` marks
 * the row in another, auto-committed statement, then deletes the object, then lets go:
 * the row says "deleted" before the object is gone, and nobody can re-reference it in
 * between. This takes two pooled connections at once (SWARM_DB_POOL_SIZE is at least 2).
 */
async function withBundleLock<T>(deps: Deps, hash: string, decide: () => Promise<T | undefined>): Promise<T | undefined> {
  return deps.db.transaction(async (lockTx) => {
    await lockBundle(lockTx, hash);
    const decided = await decide();
    if (decided !== undefined) await deps.store.delete(hash);
    return decided;
  });
}

async function deleteOrphanObjects(deps: Deps, dryRun: boolean, report: GcReport) {
  const graceCutoff = new Date(Date.now() - deps.config.gcGraceMs);
  let seen = 0;
  for await (const o of deps.store.listBlobs()) {
    if (++seen > MAX_DELETIONS_PER_RUN * 10) break;
    const [row] = await deps.db.select({ deletedAt: bundles.deletedAt }).from(bundles).where(eq(bundles.hash, o.hash));
    if (row && row.deletedAt === null) continue;
    if (o.lastModified >= graceCutoff) {
      report.keptForGrace++;
      continue;
    }
    if (dryRun) {
      report.orphanObjects++;
      report.bytesFreed += o.size;
      continue;
    }
    const deleted = await withBundleLock(deps, o.hash, async () => {
      const [live] = await deps.db
        .select({ hash: bundles.hash })
        .from(bundles)
        .where(and(eq(bundles.hash, o.hash), isNull(bundles.deletedAt)));
      return live ? undefined : o;
    });
    if (deleted) {
      report.orphanObjects++;
      report.bytesFreed += o.size;
    }
  }
}
