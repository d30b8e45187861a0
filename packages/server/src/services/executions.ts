/**
 * The spawn path: an execution row, an agent token for that execution alone, and the VM
 * metadata document the orchestrator hands the VM. Then the agent's events, which move
 * the execution through pending → booting → running → succeeded | failed.
 */
import { and, asc, desc, eq, gt, lt, or, sql } from 'drizzle-orm';
import type { Execution, ExecutionEvent, SpawnResult } from '@swarm/sdk/contract';
import type { DbOrTx } from '../db/client.js';
import { bundles, executionEvents, executions, workflowVersions, workflows } from '../db/schema.js';
import { RegistryError, notFound } from '../errors.js';
import { requireOrchestrator } from './access.js';
import { generateAgentToken } from './auth.js';
import type { Deps, Principal } from './context.js';
import { findRelease } from './release-cache.js';
import { spawnBucket } from './releases.js';
import { findWorkflow } from './workflows.js';

/** How long a VM may report on its execution. */
const AGENT_TOKEN_TTL_MS = 6 * 3600 * 1000;

type ExecutionRow = typeof executions.$inferSelect;

const toExecution = (r: ExecutionRow, version: number): Execution => ({
  id: r.id,
  workflowId: r.workflowId,
  versionId: r.versionId,
  version,
  status: r.status,
  exitCode: r.exitCode,
  failureReason: r.failureReason,
  spawnedBy: r.spawnedBy,
  versionReason: r.versionReason,
  routingKey: r.routingKey,
  createdAt: r.createdAt.toISOString(),
  startedAt: r.startedAt?.toISOString() ?? null,
  finishedAt: r.finishedAt?.toISOString() ?? null,
});

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
  spawned_by: string | null;
  version_reason: ExecutionRow['versionReason'];
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
  agentTokenExpiresAt: r.agent_token_expires_at,
  spawnedBy: r.spawned_by,
  versionReason: r.version_reason,
  routingKey: r.routing_key,
  createdAt: new Date(r.created_at),
  startedAt: r.started_at && new Date(r.started_at),
  finishedAt: r.finished_at && new Date(r.finished_at),
});

export type SpawnInput = {
  workflow: string;
  secrets: Record<string, string>;
  runtime?: { command: string[] } | undefined;
  apiUrl?: string | undefined;
  storeEndpoint?: string | undefined;
  routingKey?: string | undefined;
};

export async function spawnExecution(deps: Deps, p: Principal, input: SpawnInput): Promise<SpawnResult> {
  requireOrchestrator(p);
  const { workflow: wf } = await findRelease(deps, p, input.workflow);
  const agent = generateAgentToken();
  // One statement, so one round trip: the version is picked here, at spawn time (a later
  // activation does not change it), from the workflow row read FOR KEY SHARE (the lock
  // the execution's foreign key takes anyway), so spawns run side by side but not beside a
  // release change or gc's retiring of versions, which lock the row FOR UPDATE. Buckets
  // below the canary's weight get the canary (see chooseRelease).
  const bucket = spawnBucket(wf.id, input.routingKey);
  const rows = await deps.db.execute<SpawnedRow>(sql`
    with release as (
      select ${workflows.activeVersionId} as active_version_id, ${workflows.canaryVersionId} as canary_version_id, ${workflows.canaryWeight} as canary_weight
      from ${workflows} where ${workflows.id} = ${wf.id} for key share
    ), chosen as (
      select case when ${bucket}::int < canary_weight then canary_version_id else active_version_id end as version_id,
             case when ${bucket}::int < canary_weight then 'canary' else 'active' end as version_reason
      from release
    ), spawned as (
      insert into ${executions} (workflow_id, version_id, version_reason, routing_key, agent_token_hash, agent_token_expires_at, spawned_by)
      select ${wf.id}::uuid, version_id, version_reason, ${input.routingKey ?? null}::text, ${agent.hash}::text,
             ${new Date(Date.now() + AGENT_TOKEN_TTL_MS).toISOString()}::timestamptz, ${p.name}::text
      from chosen where version_id is not null
      returning *
    )
    select spawned.*, v.version, b.hash as bundle_hash, b.size
    from spawned join ${workflowVersions} v on v.id = spawned.version_id join ${bundles} b on b.hash = v.bundle_hash`);
  const spawned = rows[0];
  if (!spawned) {
    throw new RegistryError('NOT_FOUND', `workflow "${wf.tenant}/${wf.name}" has no active version`, `activate one: swarm activate ${wf.tenant}/${wf.name} <version>`);
  }
  const row = executionFromSql(spawned);
  const picked = { version: spawned.version, bundleHash: spawned.bundle_hash, size: Number(spawned.size), reason: row.versionReason };
  const apiUrl = input.apiUrl ?? deps.publicUrl();
  const { url } = await deps.store.signedUrl(picked.bundleHash, deps.config.urlTtlSeconds, input.storeEndpoint);
  deps.log.info({ executionId: row.id, workflowId: wf.id, version: picked.version, reason: picked.reason }, 'execution spawned');
  return {
    execution: toExecution(row, picked.version),
    metadata: {
      bundle: { url, hash: picked.bundleHash, size: picked.size },
      execution: { id: row.id, agentToken: agent.token },
      apiUrl,
      runtime: input.runtime,
      secrets: input.secrets,
    },
  };
}

/**
 * Marks executions that never got past pending or booting within `timeoutMs` of being
 * spawned as failed ("abandoned"): their VM never started, or died before reporting.
 * Time is the database's, so replicas with skewed clocks agree. Returns how many.
 */
export async function reapAbandonedExecutions(deps: Pick<Deps, 'db'>, timeoutMs: number): Promise<number> {
  const rows = await deps.db
    .update(executions)
    .set({ status: 'failed', failureReason: 'abandoned', finishedAt: sql`now()` })
    .where(
      and(
        or(eq(executions.status, 'pending'), eq(executions.status, 'booting')),
        sql`${executions.createdAt} < now() - make_interval(secs => ${timeoutMs / 1000})`,
      ),
    )
    .returning({ id: executions.id });
  return rows.length;
}

/** Where each event moves the execution; events never move it backwards. */
const NEXT_STATUS: Partial<Record<ExecutionEvent['type'], ExecutionRow['status']>> = {
  metadata_loaded: 'booting',
  runtime_started: 'running',
};
const RANK: Record<ExecutionRow['status'], number> = { pending: 0, booting: 1, running: 2, succeeded: 3, failed: 3 };

export async function appendEvent(
  deps: Deps,
  p: Principal,
  input: { executionId: string; seq: number; type: ExecutionEvent['type']; data: Record<string, unknown> },
): Promise<{ accepted: boolean }> {
  if (p.scope !== 'agent' || p.executionId !== input.executionId) throw notFound(`execution ${input.executionId}`);
  return deps.db.transaction(async (tx) => {
    const inserted = await tx
      .insert(executionEvents)
      .values({ executionId: input.executionId, seq: input.seq, type: input.type, data: input.data })
      .onConflictDoNothing()
      .returning({ seq: executionEvents.seq });
    // A retried event (same sequence number) is accepted once.
    if (inserted.length === 0) return { accepted: false };
    const [current] = await tx.select().from(executions).where(eq(executions.id, input.executionId)).for('update');
    if (!current || RANK[current.status] === 3) return { accepted: true };
    const now = new Date();
    const change: Partial<ExecutionRow> = {};
    if (input.type === 'runtime_exited') {
      const code = typeof input.data.code === 'number' ? input.data.code : null;
      Object.assign(change, { status: code === 0 ? 'succeeded' : 'failed', exitCode: code, finishedAt: now, failureReason: code === 0 ? null : 'nonzero_exit' });
    } else if (input.type === 'failed') {
      const reason = typeof input.data.reason === 'string' ? input.data.reason.slice(0, 100) : 'unknown';
      Object.assign(change, { status: 'failed', failureReason: reason, finishedAt: now });
    } else {
      const next = NEXT_STATUS[input.type];
      if (next && RANK[next] > RANK[current.status]) change.status = next;
      if (input.type === 'runtime_started') change.startedAt = now;
    }
    if (Object.keys(change).length) await tx.update(executions).set(change).where(eq(executions.id, input.executionId));
    return { accepted: true };
  });
}

async function findExecution(db: DbOrTx, p: Principal, id: string) {
  requireOrchestrator(p);
  const [row] = await db
    .select({ e: executions, version: sql<number>`(select version from workflow_versions where id = ${executions.versionId})` })
    .from(executions)
    .where(eq(executions.id, id));
  if (!row) throw notFound(`execution ${id}`);
  return row;
}

export async function getExecution(deps: Deps, p: Principal, input: { id: string }): Promise<Execution> {
  const row = await findExecution(deps.db, p, input.id);
  return toExecution(row.e, row.version);
}

export async function listExecutions(deps: Deps, p: Principal, input: { workflow: string; limit: number; cursor?: string | undefined }): Promise<Execution[]> {
  requireOrchestrator(p);
  const wf = await findWorkflow(deps.db, p, input.workflow);
  let after = undefined;
  if (input.cursor) {
    const [c] = await deps.db.select({ createdAt: executions.createdAt, id: executions.id }).from(executions).where(eq(executions.id, input.cursor));
    if (!c) throw notFound(`execution ${input.cursor}`);
    after = or(lt(executions.createdAt, c.createdAt), and(eq(executions.createdAt, c.createdAt), lt(executions.id, c.id)));
  }
  const rows = await deps.db
    .select({ e: executions, version: sql<number>`(select version from workflow_versions where id = ${executions.versionId})` })
    .from(executions)
    .where(and(eq(executions.workflowId, wf.id), after))
    .orderBy(desc(executions.createdAt), desc(executions.id))
    .limit(input.limit);
  return rows.map((r) => toExecution(r.e, r.version));
}

export async function listEvents(deps: Deps, p: Principal, input: { id: string; afterSeq?: number }): Promise<ExecutionEvent[]> {
  await findExecution(deps.db, p, input.id);
  const rows = await deps.db
    .select()
    .from(executionEvents)
    .where(and(eq(executionEvents.executionId, input.id), gt(executionEvents.seq, input.afterSeq ?? -1)))
    .orderBy(asc(executionEvents.seq));
  return rows.map((r) => ({ executionId: r.executionId, seq: r.seq, type: r.type as ExecutionEvent['type'], data: r.data, createdAt: r.createdAt.toISOString() }));
}

const WATCH_POLL_MS = 250;
/** A watch ends by itself after this long, finished or not (the client reconnects). */
const WATCH_MAX_MS = 30 * 60 * 1000;

/** Yields the execution's events in order, live, until it finishes (or the caller goes away). */
export async function* watchEvents(deps: Deps, p: Principal, input: { id: string; afterSeq?: number }, signal?: AbortSignal): AsyncGenerator<ExecutionEvent> {
  let last = input.afterSeq ?? -1;
  const deadline = Date.now() + WATCH_MAX_MS;
  while (!signal?.aborted && Date.now() < deadline) {
    // Status first, then events: the event that finishes an execution commits with the
    // status change, so it is always seen before the loop ends.
    const { e } = await findExecution(deps.db, p, input.id);
    for (const event of await listEvents(deps, p, { id: input.id, afterSeq: last })) {
      last = event.seq;
      yield event;
    }
    if (e.status === 'succeeded' || e.status === 'failed') return;
    await new Promise((r) => setTimeout(r, WATCH_POLL_MS));
  }
}
