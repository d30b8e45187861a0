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
import { agentProcedure, authedProcedure, router } from '../init.js';

const watchInput = listEventsInput.omit({ limit: true }).extend({ lastEventId: z.string().regex(/^\d+$/).optional() });

/** Every subscription of this router, checked before its stream starts (http/subscription-guard.ts). */
export const executionSubscriptions = (deps: Deps): Record<string, SubscriptionCheck> => ({
  'executions.watch': { input: watchInput, allow: (p, input: { id: string }) => findVisibleExecution(deps, p, input.id) },
});

export const executionsRouter = (deps: Deps) =>
  router({
    /** Orchestrator: an execution of the active version, and the metadata document for its VM. */
    spawn: authedProcedure
      .input(spawnInput)
      .output(spawnResult)
      .mutation(({ ctx, input }) => spawnExecution(deps, ctx.principal, input)),
    /** Orchestrator, fan-out: up to 1,000 executions of the workflow in one statement, each with its own metadata. */
    spawnMany: authedProcedure
      .input(spawnManyInput)
      .output(spawnManyResult)
      .mutation(({ ctx, input }) => spawnExecutions(deps, ctx.principal, input)),
    /** Boot agent, first call: the metadata's bootstrap agent token, once, for a session token. */
    exchangeToken: agentProcedure
      .input(exchangeAgentTokenInput)
      .output(agentSession)
      .mutation(({ ctx, input }) => exchangeAgentToken(deps, ctx.principal, input)),
    /** Boot agent (session token): one progress event of its own execution. */
    appendEvent: agentProcedure
      .input(appendEventInput)
      .output(agentAnswer)
      .mutation(({ ctx, input }) => appendEvent(deps, ctx.principal, input)),
    /** Boot agent (session token): alive; the answer says whether the execution was cancelled. */
    heartbeat: agentProcedure
      .input(heartbeatInput)
      .output(agentAnswer)
      .mutation(({ ctx, input }) => heartbeat(deps, ctx.principal, input)),
    /** Orchestrator, admin or the owning tenant: stop an execution (pending: at once; else through its agent). */
    cancel: authedProcedure
      .input(cancelExecutionInput)
      .output(execution)
      .mutation(({ ctx, input }) => cancelExecution(deps, ctx.principal, input, toExecution)),
    get: authedProcedure
      .input(z.object({ id: uuid }))
      .output(execution)
      .query(({ ctx, input }) => getExecution(deps, ctx.principal, input)),
    list: authedProcedure
      .input(listExecutionsInput)
      .output(z.array(execution))
      .query(({ ctx, input }) => listExecutions(deps, ctx.principal, input)),
    /** A page of events after `afterSeq` (at most `limit`, ≤ 1,000). */
    events: authedProcedure
      .input(listEventsInput)
      .output(z.array(executionEvent))
      .query(({ ctx, input }) => listEvents(deps, ctx.principal, input)),
    /**
     * Live events over SSE, resumable from the last seen sequence number. When the stream
     * breaks (a quiet execution outlives SWARM_IDLE_TIMEOUT_SECONDS, a proxy drops it) the
     * client reconnects with `lastEventId`, the seq of the last event it got: resume after
     * it instead of replaying the stream from the start.
     */
    watch: authedProcedure.input(watchInput).subscription(async function* ({ ctx, input, signal }) {
      const { lastEventId, ...rest } = input;
      const afterSeq = Math.max(rest.afterSeq ?? -1, lastEventId === undefined ? -1 : Number(lastEventId));
      for await (const event of watchEvents(deps, ctx.principal, { ...rest, afterSeq }, signal)) yield tracked(String(event.seq), event);
    }),
  });
