/**
 * Watching and stopping running executions (#16): the agent's heartbeats, cancel, the
 * output budget of `output` events, how the agent's final report reads when it stopped
 * the workflow itself, and the reaper that ends what no agent will (abandoned, lost,
 * timed out, cancelled past its grace period), each with a `registry_note` event.
 *
 * The VM takes no inbound connection: a cancel reaches the agent as `cancelRequested` in
 * the answer to its next heartbeat or event, so within one heartbeat interval.
 */
import type { Execution, ExecutionEvent, ExecutionStatus } from '@swarm/sdk/contract';
import { endByRegistry, markCancelRequested, reapExecutions, reapRules, recordHeartbeat } from '../db/queries/execution-control.js';
import { type ExecutionRow, executionById, lockExecution } from '../db/queries/executions.js';
import { RegistryError, notFound } from '../errors.js';
import { assertCanRead, requireOrchestrator } from './access.js';
import type { Deps, Principal } from './context.js';

/** Events that are output, with a budget of their own inside the per-execution caps. */
export const OUTPUT_EVENTS: ReadonlySet<ExecutionEvent['type']> = new Set(['output', 'output_truncated']);

/** Why the agent stopped the workflow (`runtime_exited` data `stopped`), and what the execution becomes. */
const STOPPED: Record<string, { status: ExecutionStatus; reason: string }> = {
  cancelled: { status: 'cancelled', reason: 'cancelled' },
  timed_out: { status: 'failed', reason: 'timed_out' },
};

/** The status change of a final `runtime_exited` report whose workflow the agent stopped; undefined otherwise. */
export function stoppedEnding(data: Record<string, unknown>): { status: ExecutionStatus; failureReason: string } | undefined {
  const s = typeof data.stopped === 'string' ? STOPPED[data.stopped] : undefined;
  return s && { status: s.status, failureReason: s.reason };
}

/**
 * The output budget: an `output` event past the execution's output bytes (one batch of
 * slack: the agent counts lines, the registry the event's JSON) or leaving too little
 * room under the per-execution caps is refused; `output_truncated` (one small event)
 * only by the caps. Lifecycle events are checked against lifecycle events alone.
 */
export function checkEventBudget(
  deps: Pick<Deps, 'config'>,
  current: ExecutionRow,
  type: ExecutionEvent['type'],
  bytes: number,
  final: boolean,
): void {
  const limits = deps.config.eventLimits;
  if (final) return;
  if (OUTPUT_EVENTS.has(type)) {
    const overBudget = type === 'output' && current.outputBytes + bytes > current.outputMaxBytes + limits.maxDataBytes;
    // Room is kept for the lifecycle events: a tenth of the caps.
    const overCaps =
      current.eventCount + 1 > limits.maxEvents - Math.ceil(limits.maxEvents / 10) ||
      current.eventBytes + bytes > limits.maxBytes - Math.ceil(limits.maxBytes / 10);
    if (overBudget || overCaps) {
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `execution ${current.id} has used its output budget (${current.outputMaxBytes} bytes, within the per-execution event caps)`,
        "the agent counts what it drops in output_truncated; a spawn's outputMaxBytes or SWARM_OUTPUT_MAX_BYTES sets the budget",
      );
    }
    return;
  }
  if (
    current.eventCount - current.outputEventCount >= limits.maxEvents ||
    current.eventBytes - current.outputBytes + bytes > limits.maxBytes
  ) {
    throw new RegistryError(
      'PRECONDITION_FAILED',
      `execution ${current.id} has reached its cap of ${limits.maxEvents} events or ${limits.maxBytes} bytes of event data`,
      'only its final report (runtime_exited or failed) is still taken; the caps are SWARM_MAX_EVENTS_PER_EXECUTION and SWARM_MAX_EVENT_BYTES_PER_EXECUTION',
    );
  }
}

/** The counters an accepted event adds to (besides event_count/event_bytes). */
export function outputCounters(current: ExecutionRow, type: ExecutionEvent['type'], bytes: number): Partial<ExecutionRow> {
  if (!OUTPUT_EVENTS.has(type)) return {};
  return { outputEventCount: current.outputEventCount + 1, outputBytes: current.outputBytes + bytes };
}

/** The agent's heartbeat (session token): the answer says whether to stop. */
export async function heartbeat(
  deps: Deps,
  p: Principal,
  input: { executionId: string },
): Promise<{ accepted: boolean; cancelRequested?: boolean }> {
  if (p.scope !== 'agent' || p.executionId !== input.executionId) throw notFound(`execution ${input.executionId}`);
  if (p.agentCredential !== 'session') {
    throw new RegistryError(
      'UNAUTHORIZED',
      'a bootstrap agent token cannot send heartbeats',
      'exchange it first: executions.exchangeToken',
    );
  }
  const live = await recordHeartbeat(deps.db, input.executionId);
  if (!live) throw new RegistryError('UNAUTHORIZED', `execution ${input.executionId} has ended: its agent credentials are revoked`);
  return live.cancelRequested ? { accepted: true, cancelRequested: true } : { accepted: true };
}

/**
 * Reading and cancelling an execution: the orchestrator and admins any, a tenant token its
 * own tenant's (another tenant's is "not found"); agent tokens none.
 */
export async function findVisibleExecution(deps: Pick<Deps, 'db'>, p: Principal, id: string) {
  if (p.scope === 'agent') throw notFound(`execution ${id}`);
  if (p.scope !== 'tenant') requireOrchestrator(p);
  const row = await executionById(deps.db, id);
  if (!row) throw notFound(`execution ${id}`);
  if (p.scope === 'tenant') assertCanRead(p, row.tenantId, `execution ${id}`);
  return row;
}

/**
 * Cancels an execution: a pending one at once (its bootstrap credential dies with it); a
 * booting or running one is marked `cancel_requested`, its agent stops the workflow and
 * reports, and the reaper ends it after SWARM_CANCEL_GRACE_SECONDS if the agent never does.
 * An ended execution cannot be cancelled (CONFLICT); cancelling twice is harmless.
 */
export async function cancelExecution(
  deps: Deps,
  p: Principal,
  input: { id: string },
  toExecution: (r: ExecutionRow, version: number) => Execution,
): Promise<Execution> {
  const { version } = await findVisibleExecution(deps, p, input.id);
  const row = await deps.db.transaction(async (tx) => {
    const current = await lockExecution(tx, input.id);
    if (!current) throw notFound(`execution ${input.id}`);
    if (['succeeded', 'failed', 'cancelled'].includes(current.status)) {
      throw new RegistryError('CONFLICT', `execution ${input.id} has already ended (${current.status})`);
    }
    if (current.status === 'pending') {
      await endByRegistry(tx, input.id, { status: 'cancelled', reason: 'cancelled', message: `cancelled by ${p.name} before it booted` });
    } else if (!current.cancelRequestedAt) {
      await markCancelRequested(tx, input.id);
    }
    return lockExecution(tx, input.id);
  });
  deps.log.info({ executionId: input.id, by: p.name, status: row!.status }, 'execution cancel requested');
  return toExecution(row!, version);
}

/**
 * One pass of the reaper: executions cancelled past the grace period, timed out past it,
 * lost (no heartbeat for SWARM_HEARTBEAT_MISSES intervals), abandoned (pending or booting
 * SWARM_EXECUTION_TIMEOUT_SECONDS after the spawn). How many, per reason.
 */
export function reapStuckExecutions(deps: Pick<Deps, 'db' | 'config'>, abandonedAfterMs: number): Promise<Record<string, number>> {
  const c = deps.config.control;
  return reapExecutions(
    deps.db,
    reapRules({
      abandonedAfterMs,
      lostAfterMs: c.heartbeatSeconds * c.heartbeatMisses * 1000,
      cancelGraceMs: c.cancelGraceMs,
    }),
  );
}
