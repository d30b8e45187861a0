import {
  agentAnswer,
  agentSession,
  appendEventInput,
  cancelExecutionInput,
  exchangeAgentTokenInput,
  execution,
  executionEvent,
  heartbeatInput,
  listEventsInput,
  listExecutionsInput,
  spawnInput,
  spawnManyInput,
  spawnManyResult,
  spawnResult,
  uuid,
} from '@swarm/sdk/contract';
import { tracked } from '@trpc/server';
import { z } from 'zod';
import type { Deps } from '../../services/context.js';
import {
  appendEvent,
  exchangeAgentToken,
  getExecution,
  listEvents,
  listExecutions,
  toExecution,
  watchEvents,
} from '../../services/executions.js';
import { spawnExecution, spawnExecutions } from '../../services/spawn.js';
import { cancelExecution, findVisibleExecution, heartbeat } from '../../services/execution-control.js';
import type { SubscriptionCheck } from '../../http/subscription-guard.js';
import { authedProcedure } from '../init.js';
import { type ProcedureTable, mutation, query } from '../procedure.js';

const watchInput = listEventsInput.omit({ limit: true }).extend({ lastEventId: z.string().regex(/^\d+$/).optional() });

/** Every subscription of this router, checked before its stream starts (http/subscription-guard.ts). */
export const executionSubscriptions = (deps: Deps): Record<string, SubscriptionCheck> => ({
  'executions.watch': { input: watchInput, allow: (p, input: { id: string }) => findVisibleExecution(deps, p, input.id) },
});

export const executionsProcedures = (deps: Deps) =>
  ({
    /** Orchestrator: an execution of the active version, and the metadata document for its VM. */
    spawn: mutation({
      input: spawnInput,
      output: spawnResult,
      run: ({ principal, input }) => spawnExecution(deps, principal, input),
    }),
    /** Orchestrator, fan-out: up to 1,000 executions of the workflow in one statement, each with its own metadata. */
    spawnMany: mutation({
      input: spawnManyInput,
      output: spawnManyResult,
      run: ({ principal, input }) => spawnExecutions(deps, principal, input),
    }),
    /** Boot agent, first call: the metadata's bootstrap agent token, once, for a session token. */
    exchangeToken: mutation({
      caller: 'agent',
      input: exchangeAgentTokenInput,
      output: agentSession,
      run: ({ principal, input }) => exchangeAgentToken(deps, principal, input),
    }),
    /** Boot agent (session token): one progress event of its own execution. */
    appendEvent: mutation({
      caller: 'agent',
      input: appendEventInput,
      output: agentAnswer,
      run: ({ principal, input }) => appendEvent(deps, principal, input),
    }),
    /** Boot agent (session token): alive; the answer says whether the execution was cancelled. */
    heartbeat: mutation({
      caller: 'agent',
      input: heartbeatInput,
      output: agentAnswer,
      run: ({ principal, input }) => heartbeat(deps, principal, input),
    }),
    /** Orchestrator, admin or the owning tenant: stop an execution (pending: at once; else through its agent). */
    cancel: mutation({
      input: cancelExecutionInput,
      output: execution,
      run: ({ principal, input }) => cancelExecution(deps, principal, input, toExecution),
    }),
    get: query({
      input: z.object({ id: uuid }),
      output: execution,
      run: ({ principal, input }) => getExecution(deps, principal, input),
    }),
    list: query({
      input: listExecutionsInput,
      output: z.array(execution),
      run: ({ principal, input }) => listExecutions(deps, principal, input),
    }),
    /** A page of events after `afterSeq` (at most `limit`, ≤ 1,000). */
    events: query({
      input: listEventsInput,
      output: z.array(executionEvent),
      run: ({ principal, input }) => listEvents(deps, principal, input),
    }),
  }) satisfies ProcedureTable;

/**
 * Live events over SSE, resumable from the last seen sequence number. When the stream
 * breaks (a quiet execution outlives SWARM_IDLE_TIMEOUT_SECONDS, a proxy drops it) the
 * client reconnects with `lastEventId`, the seq of the last event it got: resume after
 * it instead of replaying the stream from the start. A subscription: tRPC's stock adapter
 * streams it, so it is a tRPC procedure, not a table entry.
 */
export const watchExecution = (deps: Deps) =>
  authedProcedure.input(watchInput).subscription(async function* ({ ctx, input, signal }) {
    const { lastEventId, ...rest } = input;
    const afterSeq = Math.max(rest.afterSeq ?? -1, lastEventId === undefined ? -1 : Number(lastEventId));
    for await (const event of watchEvents(deps, ctx.principal, { ...rest, afterSeq }, signal)) yield tracked(String(event.seq), event);
  });
