/** Bundles by content address, and the advisory lock that decides whether a stored bundle lives or goes. */
import { and, eq, isNull, lt, sql } from 'drizzle-orm';
import type { DbOrTx, Tx } from '../client.js';
import { bundles, workflowVersions, workflows } from '../schema.js';

export const BUNDLE_LOCK_SPACE = 0x5357;
/** The hash's first 32 bits as a signed int4: content hashes spread evenly over the key space. */
export const bundleLockKey = (hash: string) => Number.parseInt(hash.slice(0, 8), 16) | 0;

/**
 * Serializes everything that decides whether a stored bundle lives or goes: gc holds
 * this lock while it deletes the object, a registration while it checks the object is
 * there and references it. Transaction-scoped; the two-key form keeps it apart from the
 * migration lock.
 */
export async function lockBundle(tx: Pick<Tx, 'execute'>, hash: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${BUNDLE_LOCK_SPACE}, ${bundleLockKey(hash)})`);
}

/**
 * Records a bundle whose object is in the store (the caller holds its lock and checked).
 * Bytes stored again after gc deleted them start a new grace period. A tree digest (known
 * when the bytes were just uploaded) fills one the row lacks: a bundle stored before
 * digests existed gets its digest when its bytes are uploaded again.
 */
export async function upsertStoredBundle(tx: Tx, bundle: { hash: string; size: number; treeDigest?: string | undefined }): Promise<void> {
  await tx
    .insert(bundles)
    .values({ hash: bundle.hash, size: bundle.size, treeDigest: bundle.treeDigest ?? null })
    .onConflictDoUpdate({
      target: bundles.hash,
      set: {
        deletedAt: null,
        createdAt: sql`case when ${bundles.deletedAt} is null then ${bundles.createdAt} else now() end`,
        treeDigest: sql`coalesce(excluded.tree_digest, ${bundles.treeDigest})`,
      },
    });
}

/** A bundle's size and tree digest (null for one stored before digests existed). */
export async function bundleFacts(db: DbOrTx, hash: string): Promise<{ size: number; treeDigest: string | null } | undefined> {
  const [b] = await db.select({ size: bundles.size, treeDigest: bundles.treeDigest }).from(bundles).where(eq(bundles.hash, hash));
  return b;
}

/**
 * A stored bundle (not removed by gc); with `tenantId`, only if one of that tenant's
 * versions uses it.
 */
export async function storedBundle(
  db: DbOrTx,
  hash: string,
  tenantId: string | null,
): Promise<{ size: number; treeDigest: string | null } | null> {
  const [row] =
    tenantId !== null
      ? await db
          .select({ size: bundles.size, treeDigest: bundles.treeDigest })
          .from(bundles)
          .where(
            sql`${bundles.hash} = ${hash} and ${bundles.deletedAt} is null and exists (select 1 from ${workflowVersions} join ${workflows} on ${workflows.id} = ${workflowVersions.workflowId} where ${workflowVersions.bundleHash} = ${bundles.hash} and ${workflows.tenantId} = ${tenantId})`,
          )
      : await db
          .select({ size: bundles.size, treeDigest: bundles.treeDigest })
          .from(bundles)
          .where(and(eq(bundles.hash, hash), isNull(bundles.deletedAt)));
  return row ?? null;
}

/**
 * The bundle's row: undefined when unknown, `deletedAt` set when gc removed its object.
 * With a tenant, only a bundle one of that tenant's versions (pruned ones too) refers to:
 * whether another tenant ever stored a hash must not show.
 */
export async function bundleState(db: DbOrTx, hash: string, tenantId: string | null): Promise<{ deletedAt: Date | null } | undefined> {
  const [row] = await db
    .select({ deletedAt: bundles.deletedAt })
    .from(bundles)
    .where(
      tenantId === null
        ? eq(bundles.hash, hash)
        : sql`${bundles.hash} = ${hash} and exists (select 1 from ${workflowVersions} join ${workflows} on ${workflows.id} = ${workflowVersions.workflowId} where ${workflowVersions.bundleHash} = ${bundles.hash} and ${workflows.tenantId} = ${tenantId})`,
    );
  return row;
}

/**
 * SQL for "no live version uses this bundle". `asPruned` counts those versions as pruned
 * already (a gc dry run reports what a real run would free).
 */
const unreferenced = (asPruned: string[] = []) => sql`not exists (select 1 from ${workflowVersions}
  where ${workflowVersions.bundleHash} = ${bundles.hash} and ${workflowVersions.prunedAt} is null
  ${
    asPruned.length
      ? sql`and ${workflowVersions.id} not in (${sql.join(
          asPruned.map((id) => sql`${id}::uuid`),
          sql`, `,
        )})`
      : sql``
  })`;

/** Stored bundles no live version uses (but for the versions in `asPruned`). */
export function unreferencedBundles(db: DbOrTx, asPruned: string[], limit: number) {
  return db
    .select({ hash: bundles.hash, size: bundles.size, createdAt: bundles.createdAt })
    .from(bundles)
    .where(and(isNull(bundles.deletedAt), unreferenced(asPruned)))
    .limit(limit);
}

/** Marks the bundle deleted if it is still stored, unreferenced and older than `createdBefore`; returns its size then. */
export async function markBundleDeleted(db: DbOrTx, hash: string, createdBefore: Date): Promise<{ size: number } | undefined> {
  const [row] = await db
    .update(bundles)
    .set({ deletedAt: sql`now()` })
    .where(and(eq(bundles.hash, hash), isNull(bundles.deletedAt), lt(bundles.createdAt, createdBefore), unreferenced()))
    .returning({ size: bundles.size });
  return row;
}
