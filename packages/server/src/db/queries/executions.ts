/** Executions (one run of a version in a VM) and the events their boot agents report. */
import { and, asc, desc, eq, gt, inArray, lt, or, sql, type SQL } from 'drizzle-orm';
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
  output_max_bytes: string | number;
  output_event_count: number;
  output_bytes: string | number;
  timeout_seconds: number | null;
  cancel_requested_at: Date | null;
  last_heartbeat_at: Date | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  version: number;
  bundle_hash: string;
  size: string | number;
  tree_digest: string | null;
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
  outputMaxBytes: Number(r.output_max_bytes),
  outputEventCount: r.output_event_count,
  outputBytes: Number(r.output_bytes),
  timeoutSeconds: r.timeout_seconds,
  cancelRequestedAt: r.cancel_requested_at && new Date(r.cancel_requested_at),
  lastHeartbeatAt: r.last_heartbeat_at && new Date(r.last_heartbeat_at),
  createdAt: new Date(r.created_at),
  startedAt: r.started_at && new Date(r.started_at),
  finishedAt: r.finished_at && new Date(r.finished_at),
});

export type SpawnedExecution = { row: ExecutionRow; version: number; bundleHash: string; size: number; treeDigest: string | null };

/** One execution to insert: which workflow, the spawn's bucket and its agent token. */
export type ExecutionToSpawn = {
  workflowId: string;
  /** 0–99: buckets below the canary's weight get the canary. */
  bucket: number;
  routingKey: string | undefined;
  /** sha256 (hex) of the bootstrap agent token: unique per spawn, and how rows find their callers. */
  agentTokenHash: string;
  /** The bootstrap token dies this long after the spawn, by the database's clock. */
  agentTokenTtlSeconds: number;
  spawnedBy: string;
  /** The spawn's own timeout; undefined takes the workflow's (workflows.timeout_seconds), else none. */
  timeoutSeconds: number | undefined;
  /** Bytes of output the execution may ship to the registry. */
  outputMaxBytes: number;
};

/**
 * Inserts executions of the versions their spawns get, all in ONE statement (one round
 * trip, one transaction, one durable commit: how spawns are group-committed, and how
 * spawnMany fans out). Each version is picked here, at spawn time (a later activation does
 * not change it), from the workflow rows read FOR KEY SHARE (the lock the executions'
 * foreign key takes anyway), so spawns run side by side but not beside a release change or
 * gc's retiring of versions, which lock the row FOR UPDATE. Buckets below the canary's
 * weight get the canary. The answer is in the order of `spawns`; undefined where the
 * workflow has no active version (or no longer exists).
 */
export async function insertSpawnedExecutions(db: DbOrTx, spawns: ExecutionToSpawn[]): Promise<(SpawnedExecution | undefined)[]> {
  if (spawns.length === 0) return [];
  const items = JSON.stringify(
    spawns.map((s) => ({
      workflow_id: s.workflowId,
      bucket: s.bucket,
      routing_key: s.routingKey ?? null,
      agent_token_hash: s.agentTokenHash,
      ttl: s.agentTokenTtlSeconds,
      spawned_by: s.spawnedBy,
      timeout_seconds: s.timeoutSeconds ?? null,
      output_max_bytes: s.outputMaxBytes,
    })),
  );
  const rows = await db.execute<SpawnedRow>(sql`
    with item as (
      select * from jsonb_to_recordset(${items}::jsonb)
        as t(workflow_id uuid, bucket int, routing_key text, agent_token_hash text, ttl int, spawned_by text,
             timeout_seconds int, output_max_bytes bigint)
    ), release as (
      select ${workflows.id} as workflow_id, ${workflows.activeVersionId} as active_version_id,
             ${workflows.canaryVersionId} as canary_version_id, ${workflows.canaryWeight} as canary_weight,
             ${workflows.timeoutSeconds} as workflow_timeout_seconds
      from ${workflows} where ${workflows.id} in (select distinct workflow_id from item) for key share
    ), chosen as (
      select item.*,
             case when item.bucket < release.canary_weight then release.canary_version_id else release.active_version_id end as version_id,
             case when item.bucket < release.canary_weight then 'canary' else 'active' end as version_reason,
             coalesce(item.timeout_seconds, release.workflow_timeout_seconds) as chosen_timeout_seconds
      from item join release using (workflow_id)
    ), spawned as (
      insert into ${executions} (workflow_id, version_id, version_reason, routing_key, agent_token_hash, agent_token_expires_at, spawned_by,
                                 timeout_seconds, output_max_bytes)
      select workflow_id, version_id, version_reason, routing_key, agent_token_hash, now() + make_interval(secs => ttl), spawned_by,
             chosen_timeout_seconds, output_max_bytes
      from chosen where version_id is not null
      returning *
    )
    select spawned.*, v.version, b.hash as bundle_hash, b.size, b.tree_digest
    from spawned join ${workflowVersions} v on v.id = spawned.version_id join ${bundles} b on b.hash = v.bundle_hash`);
  const byToken = new Map<string, SpawnedExecution>();
  for (const r of rows) {
    byToken.set(r.agent_token_hash!, {
      row: executionFromSql(r),
      version: r.version,
      bundleHash: r.bundle_hash,
      size: Number(r.size),
      treeDigest: r.tree_digest,
    });
  }
  return spawns.map((s) => byToken.get(s.agentTokenHash));
}

/** What ending an execution sets besides its status: every agent credential is revoked. */
export const REVOKED = { agentTokenHash: null, agentSessionHash: null } as const;

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

/** The execution with its version's number and its workflow's tenant. */
export async function executionById(db: DbOrTx, id: string): Promise<{ e: ExecutionRow; version: number; tenantId: string } | undefined> {
  const [row] = await db
    .select({ ...withVersion, tenantId: sql<string>`(select tenant_id from workflows where id = ${executions.workflowId})` })
    .from(executions)
    .where(eq(executions.id, id));
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

/** The same for every execution of a refused spawnMany call. */
export async function deleteRefusedExecutions(db: DbOrTx, ids: string[]): Promise<void> {
  if (ids.length) await db.delete(executions).where(inArray(executions.id, ids));
}
