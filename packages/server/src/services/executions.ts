/**
 * The spawn path: an execution row, a bootstrap agent token for that execution alone, and
 * the VM metadata document the orchestrator hands the VM. Then the agent: it trades the
 * bootstrap token for a session (once, before the workload runs), and its events move
 * the execution through pending → booting → running → succeeded | failed, within caps.
 * The execution's end revokes every agent credential.
 */
import {
  type AgentSession,
  EVENTS_PAGE_MAX,
  type Execution,
  type ExecutionEvent,
  type ExecutionStatus,
  type SpawnResult,
  isTerminalStatus,
} from '@swarm/sdk/contract';
import {
  type ExecutionEventRow,
  type ExecutionRow,
  REVOKED,
  eventsAfter,
  executionById,
  executionsPage,
  failAbandonedExecutions,
  insertEvent,
  insertSpawnedExecution,
  lockExecution,
  updateExecution,
} from '../db/queries/executions.js';
import { startAgentSession } from '../db/queries/tokens.js';
import type { DbOrTx } from '../db/client.js';
import { RegistryError, notFound } from '../errors.js';
import { spawnSignature, spawnedSignature } from './signing.js';
import { findRelease, findWorkflow, requireOrchestrator } from './access.js';
import { generateAgentToken } from './auth.js';
import type { Deps, Principal } from './context.js';
import { spawnBucket } from './releases.js';

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
  bootstrapTokenTtlSeconds?: number | undefined;
};

export async function spawnExecution(deps: Deps, p: Principal, input: SpawnInput): Promise<SpawnResult> {
  requireOrchestrator(p);
  const release = await findRelease(deps, p, input.workflow);
  const wf = release.workflow;
  const bucket = spawnBucket(wf.id, input.routingKey);
  // From the cached release, before an execution exists: the version this bucket gets, and its signature.
  const expected = release.canary && bucket < release.canary.weight ? release.canary : release.active;
  const signing = expected ? spawnSignature(release, expected) : undefined;
  const agent = generateAgentToken('bootstrap');
  const spawned = await insertSpawnedExecution(deps.db, {
    workflowId: wf.id,
    bucket,
    routingKey: input.routingKey,
    agentTokenHash: agent.hash,
    agentTokenTtlSeconds: input.bootstrapTokenTtlSeconds ?? deps.config.bootstrapTokenTtlSeconds,
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
      // A release changed since the cache's answer: the version spawned is not the one checked.
      signing: row.versionId === expected?.versionId ? signing : await spawnedSignature(deps, row.id, row.versionId),
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

/**
 * The boot agent's first call: its bootstrap token (from the VM metadata, which the
 * workload may be able to read) buys the session token, which lives only in the agent's
 * memory. The bootstrap token is dead from then on.
 */
export async function exchangeAgentToken(deps: Deps, p: Principal, input: { executionId: string }): Promise<AgentSession> {
  if (p.scope !== 'agent' || p.executionId !== input.executionId) throw notFound(`execution ${input.executionId}`);
  if (p.agentCredential !== 'bootstrap') throw new RegistryError('UNAUTHORIZED', 'only a bootstrap agent token can be exchanged');
  const session = generateAgentToken('session');
  if (!(await startAgentSession(deps.db, input.executionId, session.hash))) {
    throw new RegistryError('UNAUTHORIZED', 'this bootstrap agent token was already exchanged, has expired, or its execution ended');
  }
  deps.log.info({ executionId: input.executionId }, 'agent session started');
  return { sessionToken: session.token };
}

/** Where each event moves the execution; events never move it backwards. */
const NEXT_STATUS: Partial<Record<ExecutionEvent['type'], ExecutionStatus>> = {
  metadata_loaded: 'booting',
  runtime_started: 'running',
};
const RANK: Record<ExecutionStatus, number> = { pending: 0, booting: 1, running: 2, succeeded: 3, failed: 3 };

/**
 * The agent's final report: it ends the execution, and is never refused for the
 * per-execution caps (the room is reserved for it: the caps count every event but refuse
 * only the others). After it, the execution's credentials are revoked, so there is one.
 */
const FINAL_EVENTS: ReadonlySet<ExecutionEvent['type']> = new Set(['runtime_exited', 'failed']);

export async function appendEvent(
  deps: Deps,
  p: Principal,
  input: { executionId: string; seq: number; type: ExecutionEvent['type']; data: Record<string, unknown> },
): Promise<{ accepted: boolean }> {
  if (p.scope !== 'agent' || p.executionId !== input.executionId) throw notFound(`execution ${input.executionId}`);
  if (p.agentCredential !== 'session') {
    throw new RegistryError('UNAUTHORIZED', 'a bootstrap agent token cannot report events', 'exchange it first: executions.exchangeToken');
  }
  const limits = deps.config.eventLimits;
  const bytes = Buffer.byteLength(JSON.stringify(input.data));
  if (bytes > limits.maxDataBytes) {
    throw new RegistryError(
      'PAYLOAD_TOO_LARGE',
      `event data is ${bytes} bytes, more than ${limits.maxDataBytes}`,
      'report less: SWARM_MAX_EVENT_DATA_BYTES caps one event',
    );
  }
  return deps.db.transaction(async (tx) => {
    // The row lock orders this append after any that ended the execution.
    const current = await lockExecution(tx, input.executionId);
    if (!current || isTerminalStatus(current.status)) {
      throw new RegistryError('UNAUTHORIZED', `execution ${input.executionId} has ended: its agent credentials are revoked`);
    }
    // A retried event (same sequence number) is accepted once.
    if (!(await insertEvent(tx, { executionId: input.executionId, seq: input.seq, type: input.type, data: input.data })))
      return { accepted: false };
    const final = FINAL_EVENTS.has(input.type);
    if (!final && (current.eventCount >= limits.maxEvents || current.eventBytes + bytes > limits.maxBytes)) {
      // Thrown inside the transaction: the event just inserted is rolled back.
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `execution ${input.executionId} has reached its cap of ${limits.maxEvents} events or ${limits.maxBytes} bytes of event data`,
        'only its final report (runtime_exited or failed) is still taken; the caps are SWARM_MAX_EVENTS_PER_EXECUTION and SWARM_MAX_EVENT_BYTES_PER_EXECUTION',
      );
    }
    const now = new Date();
    const change: Partial<ExecutionRow> = { eventCount: current.eventCount + 1, eventBytes: current.eventBytes + bytes };
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
    // The final report is recorded in this call; every credential of the execution dies with it.
    if (final) Object.assign(change, REVOKED);
    await updateExecution(tx, input.executionId, change);
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

const toEvent = (r: ExecutionEventRow): ExecutionEvent => ({
  executionId: r.executionId,
  seq: r.seq,
  type: r.type as ExecutionEvent['type'],
  data: r.data,
  createdAt: r.createdAt.toISOString(),
});

/** One page of the execution's events after `afterSeq` (the next page starts after its last seq). */
export async function listEvents(
  deps: Deps,
  p: Principal,
  input: { id: string; afterSeq?: number | undefined; limit?: number | undefined },
): Promise<ExecutionEvent[]> {
  await findExecution(deps.db, p, input.id);
  const rows = await eventsAfter(deps.db, input.id, input.afterSeq ?? -1, input.limit ?? EVENTS_PAGE_MAX);
  return rows.map(toEvent);
}

const WATCH_POLL_MS = 250;
/** A watch ends by itself after this long, finished or not (the client reconnects). */
const WATCH_MAX_MS = 30 * 60 * 1000;

/**
 * Yields the execution's events in order, live, until it finishes (or the caller goes
 * away). History is replayed a page at a time, as the stream takes it: never all at once.
 */
export async function* watchEvents(
  deps: Deps,
  p: Principal,
  input: { id: string; afterSeq?: number | undefined },
  signal?: AbortSignal,
): AsyncGenerator<ExecutionEvent> {
  let last = input.afterSeq ?? -1;
  const deadline = Date.now() + WATCH_MAX_MS;
  while (!signal?.aborted && Date.now() < deadline) {
    // Status first, then events: the event that finishes an execution commits with the
    // status change, so it is always seen before the loop ends.
    const { e } = await findExecution(deps.db, p, input.id);
    let page: ExecutionEventRow[];
    do {
      page = await eventsAfter(deps.db, input.id, last, EVENTS_PAGE_MAX);
      for (const row of page) {
        last = row.seq;
        yield toEvent(row);
      }
    } while (page.length === EVENTS_PAGE_MAX && !signal?.aborted);
    if (isTerminalStatus(e.status)) return;
    await new Promise((r) => setTimeout(r, WATCH_POLL_MS));
  }
}
