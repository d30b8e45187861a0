/**
 * Subscriptions (SSE) are refused before the stream starts: tRPC's adapter answers 200 and
 * `text/event-stream` first, and only then runs the procedure, so a bad token or another
 * tenant's execution became an error event inside a successful response. This check
 * checks the caller, the input and what it may see for every subscription procedure, and
 * answers 400/401/403/404 with tRPC's error body (the SDK turns it into a SwarmError)
 * before a byte of stream. The procedure still checks again: this is the early answer,
 * not the only guard.
 */
import { TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { describeIssues, RegistryError, toRegistryError } from '../errors.js';
import type { Principal } from '../services/context.js';

export type SubscriptionCheck = {
  input: z.ZodType;
  /** Throws a RegistryError when `p` may not subscribe with `input`. */
  allow: (p: Principal, input: never) => Promise<unknown>;
};

/**
 * The check of a subscription request, for http/trpc-native.ts to run before it hands the
 * request to the stock adapter: answers the refusal and returns true, or returns false.
 * Only subscription paths pay for it (it used to be a hook on every request).
 */
export function subscriptionGuard(o: {
  /** Subscription procedures by path (`executions.watch`). */
  subscriptions: Record<string, SubscriptionCheck>;
  principalOf: (request: FastifyRequest) => Promise<Principal | null>;
}): (request: FastifyRequest, reply: FastifyReply, path: string) => Promise<boolean> {
  return async (request, reply, path) => {
    const check = o.subscriptions[path];
    if (!check) return false;
    try {
      const p = await o.principalOf(request);
      if (!p || p.scope === 'agent') throw new RegistryError('UNAUTHORIZED', 'missing or invalid bearer token');
      const raw = (request.query as Record<string, string | undefined>).input;
      let json: unknown;
      try {
        json = raw === undefined ? undefined : JSON.parse(raw);
      } catch {
        throw new RegistryError('BAD_REQUEST', 'invalid input: not JSON');
      }
      const parsed = check.input.safeParse(json);
      if (!parsed.success) throw new RegistryError('BAD_REQUEST', `invalid input: ${describeIssues(parsed.error.issues)}`);
      await check.allow(p, parsed.data as never);
      return false;
    } catch (err) {
      refuse(reply, toRegistryError(err));
      return true;
    }
  };
}

/** tRPC's error body, as its HTTP answers carry it. */
function refuse(reply: FastifyReply, err: RegistryError): void {
  const data = { code: err.code, httpStatus: err.status, ...(err.hint ? { hint: err.hint } : {}) };
  reply.status(err.status).send({ error: { message: err.message, code: TRPC_ERROR_CODES_BY_KEY[err.code], data } });
}
