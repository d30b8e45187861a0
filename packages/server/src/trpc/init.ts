/**
 * tRPC setup: the context (who is calling), the one place RegistryError codes become
 * tRPC errors, and how a procedure table (trpc/procedure.ts) becomes a tRPC router.
 */
import { TRPCError, type TRPCMutationProcedure, type TRPCQueryProcedure, initTRPC } from '@trpc/server';
import { TRPC_ERROR_CODES_BY_KEY } from '@trpc/server/rpc';
import { type z, ZodError } from 'zod';
import { RegistryError, describeIssues, toRegistryError } from '../errors.js';
import type { Principal } from '../services/context.js';
import { type CallerKind, type Procedure, type ProcedureTable, authorize } from './procedure.js';

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

/**
 * Whatever a procedure threw, as the tRPC error its caller gets: tRPC's own errors (bad
 * input, unknown path) as they are, everything else by its RegistryError code (see
 * toRegistryError). Unexpected failures are reported with their cause.
 */
export function toTrpcError(thrown: unknown, reportError: (err: unknown) => void): TRPCError {
  if (thrown instanceof TRPCError && thrown.code !== 'INTERNAL_SERVER_ERROR') return thrown;
  const cause = thrown instanceof TRPCError ? (thrown.cause ?? thrown) : thrown;
  const err = toRegistryError(cause);
  if (err.code === 'INTERNAL_SERVER_ERROR' || err.code === 'SERVICE_UNAVAILABLE') reportError(cause);
  return new TRPCError({ code: err.code, message: err.message, cause: err });
}

const mapErrors = t.middleware(async ({ next, ctx }) => {
  const result = await next();
  if (result.ok) return result;
  throw toTrpcError(result.error, ctx.reportError);
});

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

const withCaller = (caller: CallerKind) =>
  t.procedure.use(mapErrors).use(async ({ ctx, next }) => next({ ctx: { principal: authorize(caller, await ctx.principal()) } }));

/** Every procedure needs a valid API token: there is no public procedure. Subscriptions are built on this. */
export const authedProcedure = withCaller('api');
/** For the boot agent's calls: needs the agent token of an execution. */
const agentProcedure = withCaller('agent');

type Root = (typeof t)['_config']['$types'];
type ProcedureTypes<I, O extends z.ZodType> = {
  // biome-ignore lint/suspicious/noConfusingVoidType: tRPC's own type for "no input", which lets the client call `.query()` without an argument.
  input: I extends z.ZodType ? z.input<I> : void;
  output: z.output<O>;
  meta: Root['meta'];
  errorShape: Root['errorShape'];
};
/** The tRPC procedure of a table entry, typed as the procedure builder would type it. */
export type TrpcProcedureOf<P> =
  P extends Procedure<'query', infer I, infer O>
    ? TRPCQueryProcedure<ProcedureTypes<I, O>>
    : P extends Procedure<'mutation', infer I, infer O>
      ? TRPCMutationProcedure<ProcedureTypes<I, O>>
      : never;

/** A table entry as a tRPC procedure: the same caller check, input and output schemas and function. */
function trpcProcedure<P extends Procedure>(p: P): TrpcProcedureOf<P> {
  const base = p.caller === 'agent' ? agentProcedure : authedProcedure;
  const validated = (p.input ? base.input(p.input) : base).output(p.output);
  const resolver = ({ ctx, input, signal }: { ctx: { principal: Principal }; input: unknown; signal: AbortSignal | undefined }) =>
    p.run({ principal: ctx.principal, input: input as never, signal });
  return (p.type === 'query' ? validated.query(resolver) : validated.mutation(resolver)) as TrpcProcedureOf<P>;
}

/** The tRPC router of a procedure table, with the procedures only tRPC serves (subscriptions) added. */
export function routerOf<T extends ProcedureTable, TOnlyTrpc extends Record<string, unknown> = Record<never, never>>(
  table: T,
  onlyTrpc?: TOnlyTrpc,
) {
  const procedures = Object.fromEntries(Object.entries(table).map(([name, p]) => [name, trpcProcedure(p)]));
  return router({ ...procedures, ...onlyTrpc } as { [K in keyof T]: TrpcProcedureOf<T[K]> } & TOnlyTrpc);
}
