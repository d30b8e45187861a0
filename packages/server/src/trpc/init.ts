/**
 * tRPC setup: the context (who is calling), the one place RegistryError codes become
 * tRPC errors, and the procedure builders every router uses.
 */
import { TRPCError, initTRPC } from '@trpc/server';
import { TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import { ZodError } from 'zod';
import { RegistryError, describeIssues, toRegistryError } from '../errors.js';
import type { Principal } from '../services/context.js';

/**
 * Kept free of database and storage types on purpose: the SDK's published .d.ts
 * include this type, and must not drag the server's dependencies into consumers.
 */
export type Context = {
  /** Resolves the bearer token once per request; null when absent or invalid. */
  principal: () => Promise<Principal | null>;
  /** Logs an unexpected error with its cause (never shown to the caller). */
  reportError: (err: unknown) => void;
};

const t = initTRPC.context<Context>().create({
  isDev: false,
  errorFormatter({ shape, error }) {
    // An error thrown while a subscription streams never passes through mapErrors: map it here.
    const streamed =
      error.code === 'INTERNAL_SERVER_ERROR' && !(error.cause instanceof ZodError) ? toRegistryError(error.cause ?? error) : undefined;
    if (streamed && streamed.code !== 'INTERNAL_SERVER_ERROR') {
      const data = { code: streamed.code, httpStatus: streamed.status, hint: streamed.hint };
      return { ...shape, code: TRPC_ERROR_CODES_BY_KEY[streamed.code], message: streamed.message, data };
    }
    const cause = error.cause;
    const hint = cause instanceof RegistryError ? cause.hint : undefined;
    const message =
      cause instanceof ZodError ? `invalid input: ${describeIssues(cause.issues)}` : streamed ? streamed.message : shape.message;
    return { ...shape, message, data: { code: shape.data.code, httpStatus: shape.data.httpStatus, hint } };
  },
});

/** Turns whatever a service threw into a tRPC error with the matching code. */
const mapErrors = t.middleware(async ({ next, ctx }) => {
  const result = await next();
  if (result.ok || result.error.code !== 'INTERNAL_SERVER_ERROR') return result;
  const err = toRegistryError(result.error.cause ?? result.error);
  if (err.code === 'INTERNAL_SERVER_ERROR' || err.code === 'SERVICE_UNAVAILABLE') ctx.reportError(result.error.cause ?? result.error);
  throw new TRPCError({ code: err.code, message: err.message, cause: err });
});

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/** Every procedure needs a valid API token: there is no public procedure. */
export const authedProcedure = t.procedure.use(mapErrors).use(async ({ ctx, next }) => {
  const principal = await ctx.principal();
  // Agent tokens (one per execution, held by a VM) only report events: agentProcedure.
  if (!principal || principal.scope === 'agent') throw new RegistryError('UNAUTHORIZED', 'missing or invalid bearer token');
  return next({ ctx: { principal } });
});

/** For the boot agent's calls: needs the agent token of an execution. */
export const agentProcedure = t.procedure.use(mapErrors).use(async ({ ctx, next }) => {
  const principal = await ctx.principal();
  if (principal?.scope !== 'agent') {
    const hint = 'a bootstrap token is exchanged once, before it expires; every agent credential dies when its execution ends';
    throw new RegistryError('UNAUTHORIZED', 'missing, invalid, spent or revoked agent token', hint);
  }
  return next({ ctx: { principal } });
});
