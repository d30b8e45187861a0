/** Executions (one run of a version in a VM) and the events their boot agents report. */
import { and, asc, desc, eq, gt, lt, or, sql, type SQL } from 'drizzle-orm';
import type { VersionReason } from '@swarm/sdk/contract';
import type { DbOrTx, Tx } from '../client.js';
import { bundles, executionEvents, executions, workflowVersions, workflows } from '../schema.js';

export type ExecutionRow = typeof executions.$inferSelect;
export type ExecutionEventRow = typeof executionEvents.$inferSelect;

/** An execution row as raw SQL returns it, with the chosen version's number and bundle. */
type SpawnedRow = {
  id: string;
  workflow_id: string;
  version_id: string;
  status: ExecutionRow['status'];
  exit_code: number | null;
  failure_reason: string | null;
  agent_token_hash: string | null;
  agent_token_expires_at: Date | null;
  agent_session_hash: string | null;
  event_count: number;
  event_bytes: string | number;
  spawned_by: string | null;
  version_reason: VersionReason;
  routing_key: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  version: number;
  bundle_hash: string;
  size: string | number;
};

const executionFromSql = (r: SpawnedRow): ExecutionRow => ({
  id: r.id,
  workflowId: r.workflow_id,
  versionId: r.version_id,
  status: r.status,
  exitCode: r.exit_code,
  failureReason: r.failure_reason,
  agentTokenHash: r.agent_token_hash,
  agentTokenExpiresAt: r.agent_token_expires_at && new Date(r.agent_token_expires_at),
  agentSessionHash: r.agent_session_hash,
  eventCount: r.event_count,
  eventBytes: Number(r.event_bytes),
  spawnedBy: r.spawned_by,
  versionReason: r.version_reason,
  routingKey: r.routing_key,
  createdAt: new Date(r.created_at),
  startedAt: r.started_at && new Date(r.started_at),
  finishedAt: r.finished_at && new Date(r.finished_at),
});

export type SpawnedExecution = { row: ExecutionRow; version: number; bundleHash: string; size: number };

/**
 * Inserts an execution of the version a spawn in `bucket` (0–99) gets, in one statement,
 * so one round trip: the version is picked here, at spawn time (a later activation does
 * not change it), from the workflow row read FOR KEY SHARE (the lock the execution's
 * foreign key takes anyway), so spawns run side by side but not beside a release change
 * or gc's retiring of versions, which lock the row FOR UPDATE. Buckets below the canary's
 * weight get the canary. Undefined when the workflow has no active version.
 */
export async function insertSpawnedExecution(
  db: DbOrTx,
  spawn: {
    workflowId: string;
    bucket: number;
    routingKey: string | undefined;
    agentTokenHash: string;
    /** The bootstrap token dies this long after the spawn, by the database's clock. */
    agentTokenTtlSeconds: number;
    spawnedBy: string;
  },
): Promise<SpawnedExecution | undefined> {
  const rows = await db.execute<SpawnedRow>(sql`
    with release as (
      select ${workflows.activeVersionId} as active_version_id, ${workflows.canaryVersionId} as canary_version_id, ${workflows.canaryWeight} as canary_weight
      from ${workflows} where ${workflows.id} = ${spawn.workflowId} for key share
    ), chosen as (
      select case when ${spawn.bucket}::int < canary_weight then canary_version_id else active_version_id end as version_id,
             case when ${spawn.bucket}::int < canary_weight then 'canary' else 'active' end as version_reason
      from release
    ), spawned as (
      insert into ${executions} (workflow_id, version_id, version_reason, routing_key, agent_token_hash, agent_token_expires_at, spawned_by)
      select ${spawn.workflowId}::uuid, version_id, version_reason, ${spawn.routingKey ?? null}::text, ${spawn.agentTokenHash}::text,
             now() + make_interval(secs => ${spawn.agentTokenTtlSeconds}), ${spawn.spawnedBy}::text
      from chosen where version_id is not null
      returning *
    )
    select spawned.*, v.version, b.hash as bundle_hash, b.size
    from spawned join ${workflowVersions} v on v.id = spawned.version_id join ${bundles} b on b.hash = v.bundle_hash`);
  const spawned = rows[0];
  if (!spawned) return undefined;
  return { row: executionFromSql(spawned), version: spawned.version, bundleHash: spawned.bundle_hash, size: Number(spawned.size) };
}

/** What ending an execution sets besides its status: every agent credential is revoked. */
export const REVOKED = { agentTokenHash: null, agentSessionHash: null } as const;

/**
 * Marks executions still pending or booting `timeoutMs` after they were spawned as
 * failed ("abandoned"), by the database's clock, revoking their agent credentials.
 * Returns how many.
 */
export async function failAbandonedExecutions(db: DbOrTx, timeoutMs: number): Promise<number> {
  const rows = await db
    .update(executions)
    .set({ ...REVOKED, status: 'failed', failureReason: 'abandoned', finishedAt: sql`now()` })
    .where(
      and(
        or(eq(executions.status, 'pending'), eq(executions.status, 'booting')),
        sql`${executions.createdAt} < now() - make_interval(secs => ${timeoutMs / 1000})`,
      ),
    )
    .returning({ id: executions.id });
  return rows.length;
}

/** Stores an event unless one with its sequence number is there; true if it was new. */
export async function insertEvent(
  tx: Tx,
  event: { executionId: string; seq: number; type: string; data: Record<string, unknown> },
): Promise<boolean> {
  const inserted = await tx.insert(executionEvents).values(event).onConflictDoNothing().returning({ seq: executionEvents.seq });
  return inserted.length > 0;
}

export async function lockExecution(tx: Tx, id: string): Promise<ExecutionRow | undefined> {
  const [row] = await tx.select().from(executions).where(eq(executions.id, id)).for('update');
  return row;
}

export async function updateExecution(tx: Tx, id: string, change: Partial<ExecutionRow>): Promise<void> {
  await tx.update(executions).set(change).where(eq(executions.id, id));
}

const withVersion = { e: executions, version: sql<number>`(select version from workflow_versions where id = ${executions.versionId})` };

/** The execution with its version's number. */
export async function executionById(db: DbOrTx, id: string): Promise<{ e: ExecutionRow; version: number } | undefined> {
  const [row] = await db.select(withVersion).from(executions).where(eq(executions.id, id));
  return row;
}

/** A page of the workflow's executions, newest first, after the execution `cursor` (undefined: that execution does not exist). */
export async function executionsPage(
  db: DbOrTx,
  workflowId: string,
  page: { limit: number; cursor?: string | undefined },
): Promise<{ e: ExecutionRow; version: number }[] | undefined> {
  let after: SQL | undefined;
  if (page.cursor) {
    const [c] = await db
      .select({ createdAt: executions.createdAt, id: executions.id })
      .from(executions)
      .where(eq(executions.id, page.cursor));
    if (!c) return undefined;
    after = or(lt(executions.createdAt, c.createdAt), and(eq(executions.createdAt, c.createdAt), lt(executions.id, c.id)));
  }
  return db
    .select(withVersion)
    .from(executions)
    .where(and(eq(executions.workflowId, workflowId), after))
    .orderBy(desc(executions.createdAt), desc(executions.id))
    .limit(page.limit);
}

/** A page of the execution's events: the first `limit` after sequence number `afterSeq`, in order. */
export function eventsAfter(db: DbOrTx, executionId: string, afterSeq: number, limit: number): Promise<ExecutionEventRow[]> {
  return db
    .select()
    .from(executionEvents)
    .where(and(eq(executionEvents.executionId, executionId), gt(executionEvents.seq, afterSeq)))
    .orderBy(asc(executionEvents.seq))
    .limit(limit);
}

/** Removes an execution a spawn refused after inserting it (no VM was ever given it: no events). */
export async function deleteRefusedExecution(db: DbOrTx, id: string): Promise<void> {
  await db.delete(executions).where(eq(executions.id, id));
}
