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
 * the bundle's advisory lock (db/queries/bundles.ts lockBundle), held on a connection of its own across
 * the row update's commit and the object's deletion. A registration takes the same lock,
 * then checks the object is in the store before it references it. So either gc deleted
 * first and the registration sees the object missing (CONFLICT: upload again, which the
 * SDK does), or the registration committed first and gc's re-check sees a live version.
 * If gc dies between the commit and the deletion, the object is merely orphaned and the
 * next run removes it.
 */
import type { GcReport } from '@swarm/sdk/contract';
import { bundleState, lockBundle, markBundleDeleted, storedBundle, unreferencedBundles } from '../db/queries/bundles.js';
import { pruneCandidates, pruneVersionsOf } from '../db/queries/versions.js';
import { lockWorkflow } from '../db/queries/workflows.js';
import { requireAdmin } from './access.js';
import type { Deps, Principal } from './context.js';

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

/** Retires versions; in a dry run only lists them, and returns their ids. */
async function pruneVersions(deps: Deps, input: GcInput, report: GcReport): Promise<string[]> {
  const candidates = await pruneCandidates(deps.db, input);
  if (input.dryRun) {
    report.prunedVersions = candidates.map(({ ref, version, bundleHash }) => ({ workflow: ref, version, bundleHash }));
    return candidates.map((c) => c.id);
  }
  for (const workflowId of new Set(candidates.map((c) => c.workflowId))) {
    const pruned = await deps.db.transaction(async (tx) => {
      await lockWorkflow(tx, workflowId);
      // Re-checked under the lock: the release may have moved since the candidates were read.
      return pruneVersionsOf(tx, workflowId, input);
    });
    const ref = candidates.find((c) => c.workflowId === workflowId)!.ref;
    for (const v of pruned.sort((a, b) => a.version - b.version)) report.prunedVersions.push({ workflow: ref, ...v });
  }
  return [];
}

async function deleteUnreferencedBundles(deps: Deps, dryRun: boolean, report: GcReport, wouldPrune: string[]) {
  const graceCutoff = new Date(Date.now() - deps.config.gcGraceMs);
  const candidates = await unreferencedBundles(deps.db, wouldPrune, MAX_DELETIONS_PER_RUN);
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
    const deleted = await withBundleLock(deps, c.hash, () => markBundleDeleted(deps.db, c.hash, graceCutoff));
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
    const row = await bundleState(deps.db, o.hash, null);
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
    const deleted = await withBundleLock(deps, o.hash, async () => ((await storedBundle(deps.db, o.hash, null)) ? undefined : o));
    if (deleted) {
      report.orphanObjects++;
      report.bytesFreed += o.size;
    }
  }
}
