/**
 * A query or mutation of the API as a plain service call: who may call it, its input and
 * output schemas, and the function. Each router (trpc/routers/*) is a table of these;
 * trpc/router.ts builds the tRPC router from the table (its type is what the SDK's client
 * infers; `createCaller`, the stock adapter and subscriptions run through it), and
 * http/trpc-native.ts calls the same entries directly, without tRPC's procedure pipeline.
 */
import type { z } from 'zod';
import { RegistryError } from '../errors.js';
import type { Principal } from '../services/context.js';

/** Who may call: any API token (`api`), or only the agent token of an execution (`agent`, the boot agent's calls). */
export type CallerKind = 'api' | 'agent';

/** What a procedure's function gets: the caller (already authorized), its parsed input, and the request's abort signal. */
export type Call<TInput> = {
  principal: Principal;
  input: TInput;
  /** Aborted when the client goes away before the answer. */
  readonly signal: AbortSignal | undefined;
};

type InputOf<I> = I extends z.ZodType ? z.output<I> : undefined;

export type Procedure<
  TType extends 'query' | 'mutation' = 'query' | 'mutation',
  I extends z.ZodType | undefined = z.ZodType | undefined,
  O extends z.ZodType = z.ZodType,
> = {
  type: TType;
  caller: CallerKind;
  /** Absent for procedures without input: whatever the client sends is ignored, as tRPC does. */
  input: I;
  output: O;
  run: (call: Call<InputOf<I>>) => Promise<z.input<O>>;
};

/** A router's procedures by name. */
export type ProcedureTable = Record<
  string,
  Procedure<'query', z.ZodType | undefined, z.ZodType> | Procedure<'mutation', z.ZodType | undefined, z.ZodType>
>;

type Definition<I extends z.ZodType | undefined, O extends z.ZodType> = {
  /** Defaults to `api`. */
  caller?: CallerKind;
  output: O;
  run: (call: Call<InputOf<I>>) => Promise<z.input<O>>;
} & (I extends z.ZodType ? { input: I } : { input?: undefined });

type Define<TType extends 'query' | 'mutation'> = {
  <O extends z.ZodType>(def: Definition<undefined, O>): Procedure<TType, undefined, O>;
  <I extends z.ZodType, O extends z.ZodType>(def: Definition<I, O>): Procedure<TType, I, O>;
};

const define = <TType extends 'query' | 'mutation'>(type: TType): Define<TType> =>
  ((def: Definition<z.ZodType | undefined, z.ZodType>): Procedure<TType> => ({
    type,
    caller: def.caller ?? 'api',
    input: def.input,
    output: def.output,
    run: def.run as Procedure<TType>['run'],
  })) as Define<TType>;

/** A procedure that reads (GET). */
export const query = define('query');
/** A procedure that changes something (POST). */
export const mutation = define('mutation');

/**
 * Refuses a caller the procedure does not accept. API tokens (orchestrators, admins,
 * tenants) call everything but the boot agent's procedures; agent tokens (one per
 * execution, held by a VM) call only those.
 */
export function authorize(caller: CallerKind, principal: Principal | null): Principal {
  if (caller === 'agent') {
    if (principal?.scope !== 'agent') {
      const hint = 'a bootstrap token is exchanged once, before it expires; every agent credential dies when its execution ends';
      throw new RegistryError('UNAUTHORIZED', 'missing, invalid, spent or revoked agent token', hint);
    }
    return principal;
  }
  if (!principal || principal.scope === 'agent') throw new RegistryError('UNAUTHORIZED', 'missing or invalid bearer token');
  return principal;
}
