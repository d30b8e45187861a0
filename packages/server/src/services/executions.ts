/**
 * The spawn path: an execution row, an agent token for that execution alone, and the VM
 * metadata document the orchestrator hands the VM. Then the agent's events, which move
 * the execution through pending → booting → running → succeeded | failed.
 */
import type { Execution, ExecutionEvent, ExecutionStatus, SpawnResult } from '@swarm/sdk/contract';
import {
  type ExecutionRow,
  eventsAfter,
  executionById,
  executionsPage,
  failAbandonedExecutions,
  insertEvent,
  insertSpawnedExecution,
  lockExecution,
  updateExecution,
} from '../db/queries/executions.js';
import type { DbOrTx } from '../db/client.js';
import { RegistryError, notFound } from '../errors.js';
import { findRelease, findWorkflow, requireOrchestrator } from './access.js';
import { generateAgentToken } from './auth.js';
import type { Deps, Principal } from './context.js';
import { spawnBucket } from './releases.js';

/** How long a VM may report on its execution. */
const AGENT_TOKEN_TTL_MS = 6 * 3600 * 1000;

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
  const spawned = await insertSpawnedExecution(deps.db, {
    workflowId: wf.id,
    bucket: spawnBucket(wf.id, input.routingKey),
    routingKey: input.routingKey,
    agentTokenHash: agent.hash,
    agentTokenExpiresAt: new Date(Date.now() + AGENT_TOKEN_TTL_MS),
    spawnedBy: p.name,
  });
  if (!spawned) {
    throw new RegistryError(
      'NOT_FOUND',
      `workflow "${wf.tenant}/${wf.name}" has no active version`,
      `activate one: swarm activate ${wf.tenant}/${wf.name} <version>`,
    );
  }
  const { row } = spawned;
  const picked = { version: spawned.version, bundleHash: spawned.bundleHash, size: spawned.size, reason: row.versionReason };
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
export function reapAbandonedExecutions(deps: Pick<Deps, 'db'>, timeoutMs: number): Promise<number> {
  return failAbandonedExecutions(deps.db, timeoutMs);
}

/** Where each event moves the execution; events never move it backwards. */
const NEXT_STATUS: Partial<Record<ExecutionEvent['type'], ExecutionStatus>> = {
  metadata_loaded: 'booting',
  runtime_started: 'running',
};
const RANK: Record<ExecutionStatus, number> = { pending: 0, booting: 1, running: 2, succeeded: 3, failed: 3 };

export async function appendEvent(
  deps: Deps,
  p: Principal,
  input: { executionId: string; seq: number; type: ExecutionEvent['type']; data: Record<string, unknown> },
): Promise<{ accepted: boolean }> {
  if (p.scope !== 'agent' || p.executionId !== input.executionId) throw notFound(`execution ${input.executionId}`);
  return deps.db.transaction(async (tx) => {
    // A retried event (same sequence number) is accepted once.
    if (!(await insertEvent(tx, { executionId: input.executionId, seq: input.seq, type: input.type, data: input.data })))
      return { accepted: false };
    const current = await lockExecution(tx, input.executionId);
    if (!current || RANK[current.status] === 3) return { accepted: true };
    const now = new Date();
    const change: Partial<ExecutionRow> = {};
    if (input.type === 'runtime_exited') {
      const code = typeof input.data.code === 'number' ? input.data.code : null;
      Object.assign(change, {
        status: code === 0 ? 'succeeded' : 'failed',
        exitCode: code,
        finishedAt: now,
        failureReason: code === 0 ? null : 'nonzero_exit',
      });
    } else if (input.type === 'failed') {
      const reason = typeof input.data.reason === 'string' ? input.data.reason.slice(0, 100) : 'unknown';
      Object.assign(change, { status: 'failed', failureReason: reason, finishedAt: now });
    } else {
      const next = NEXT_STATUS[input.type];
      if (next && RANK[next] > RANK[current.status]) change.status = next;
      if (input.type === 'runtime_started') change.startedAt = now;
    }
    if (Object.keys(change).length) await updateExecution(tx, input.executionId, change);
    return { accepted: true };
  });
}

async function findExecution(db: DbOrTx, p: Principal, id: string) {
  requireOrchestrator(p);
  const row = await executionById(db, id);
  if (!row) throw notFound(`execution ${id}`);
  return row;
}

export async function getExecution(deps: Deps, p: Principal, input: { id: string }): Promise<Execution> {
  const row = await findExecution(deps.db, p, input.id);
  return toExecution(row.e, row.version);
}

export async function listExecutions(
  deps: Deps,
  p: Principal,
  input: { workflow: string; limit: number; cursor?: string | undefined },
): Promise<Execution[]> {
  requireOrchestrator(p);
  const wf = await findWorkflow(deps.db, p, input.workflow);
  const rows = await executionsPage(deps.db, wf.id, input);
  if (!rows) throw notFound(`execution ${input.cursor}`);
  return rows.map((r) => toExecution(r.e, r.version));
}

export async function listEvents(deps: Deps, p: Principal, input: { id: string; afterSeq?: number }): Promise<ExecutionEvent[]> {
  await findExecution(deps.db, p, input.id);
  const rows = await eventsAfter(deps.db, input.id, input.afterSeq ?? -1);
  return rows.map((r) => ({
    executionId: r.executionId,
    seq: r.seq,
    type: r.type as ExecutionEvent['type'],
    data: r.data,
    createdAt: r.createdAt.toISOString(),
  }));
}

const WATCH_POLL_MS = 250;
/** A watch ends by itself after this long, finished or not (the client reconnects). */
const WATCH_MAX_MS = 30 * 60 * 1000;

/** Yields the execution's events in order, live, until it finishes (or the caller goes away). */
export async function* watchEvents(
  deps: Deps,
  p: Principal,
  input: { id: string; afterSeq?: number },
  signal?: AbortSignal,
): AsyncGenerator<ExecutionEvent> {
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
