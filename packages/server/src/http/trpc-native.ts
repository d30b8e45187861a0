/**
 * tRPC queries and mutations served by Fastify directly, speaking tRPC 11's HTTP wire
 * protocol (what `httpLink` and `httpBatchLink` send): `GET /trpc/<path>?input=<json>` for
 * queries, `POST /trpc/<path>` with a JSON body for mutations, `?batch=1` with comma-separated
 * paths and inputs keyed by index, `{ result: { data } }` / `{ error: shape }` answers with
 * the router's error formatter, and tRPC's HTTP status (207 for a batch of mixed statuses).
 *
 * Why not the stock Fastify adapter for these: it turns every request into a WHATWG
 * Request and every answer into a Response streamed back through Fastify, and combines
 * abort signals per call (~80% of the CPU of a cached `versions.active`, ~8× the REST
 * route's). Why not call the tRPC procedure either: its pipeline copies the call's options
 * once per middleware (mapErrors, the caller check, input and output validation, the
 * resolver) and was still ~2.6× the REST route's CPU per call (bench/README.md, figure 2b).
 * So a call here is the procedure table's entry (trpc/procedure.ts), the same one the tRPC
 * router is built from: the caller check, the input schema, the service function, the
 * answer written by the serializer compiled from the output schema (trpc/answer.ts), and
 * errors through the router's formatter (trpc/init.ts, toTrpcError).
 * The router has no data transformer: inputs and answers are JSON as they are.
 *
 * Everything else goes to the stock adapter unchanged: subscriptions (SSE,
 * `httpSubscriptionLink`), streamed batches (`httpBatchStreamLink`, `accept:
 * application/jsonl`), non-JSON bodies, and methods other than GET and POST.
 */
import type { AnyTRPCRouter } from '@trpc/server';
import { fastifyRequestHandler } from '@trpc/server/adapters/fastify';
import {
  type AnyProcedure,
  type ProcedureType,
  TRPCError,
  defaultTransformer,
  getErrorShape,
  getHTTPStatusCode,
  getTRPCErrorFromUnknown,
} from '@trpc/server/unstable-core-do-not-import';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Principal } from '../services/context.js';
import { type AnswerWriter, checked, compileAnswer, parsedAnswer } from '../trpc/answer.js';
import { type Context, toTrpcError } from '../trpc/init.js';
import { type Call, type Procedure, authorize } from '../trpc/procedure.js';

export type TrpcRouteOptions = {
  /** The tRPC router built from `procedures`: the stock adapter serves what this handler does not. */
  router: AnyTRPCRouter;
  /** Every query and mutation by path (`workflows.get`). */
  procedures: ReadonlyMap<string, Procedure>;
  /** Who is calling: the request's bearer token, resolved once per request (also for a batch); null when absent or invalid. */
  principalOf: (request: FastifyRequest) => Promise<Principal | null>;
  /** Logs an unexpected error of the request, with its cause (never shown to the caller). */
  reportError: (request: FastifyRequest, err: unknown) => void;
  /** Refuses a subscription before its stream starts (answers, and returns true), else returns false. */
  checkSubscription?: (request: FastifyRequest, reply: FastifyReply, path: string) => Promise<boolean>;
  /** Largest JSON body, in bytes. */
  maxBodySize: number;
  /** Most calls in one `?batch=1` request; more are refused whole with BAD_REQUEST. */
  maxBatchSize: number;
  /** Also check every answer against its zod schema (trpc/answer.ts; tests). */
  checkAnswers?: boolean;
};

const ACCEPTED_METHOD: Record<string, string> = { query: 'GET', mutation: 'POST', subscription: 'GET' };

/** One call's answer: its JSON text (`{"result":…}` or `{"error":…}`) and its HTTP status. */
type Outcome = { json: string; status: number };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function contentTypeOf(request: FastifyRequest): string | undefined {
  return request.headers['content-type']?.split(';', 1)[0]?.trim().toLowerCase();
}

/** Registers `ALL <prefix>/*`: the fast path for queries and mutations, the stock adapter for the rest. */
export async function trpcRoutes(app: FastifyInstance, opts: TrpcRouteOptions & { prefix: string }): Promise<void> {
  const { router, procedures, principalOf, reportError, maxBatchSize } = opts;
  const config = router._def._config;
  if (config.transformer !== defaultTransformer) throw new Error('trpcRoutes answers plain JSON: the router must have no transformer');
  // Procedures only tRPC serves (subscriptions), by path.
  const trpcOnly = router._def.procedures as Record<string, AnyProcedure | undefined>;
  const typeOf = (path: string): ProcedureType | undefined =>
    procedures.get(path)?.type ?? (Object.hasOwn(trpcOnly, path) ? trpcOnly[path]?._def.type : undefined);
  // Each procedure's answer writer, compiled once (trpc/answer.ts).
  const writers = new Map<string, AnswerWriter>();
  for (const [path, procedure] of procedures) {
    const write = compileAnswer(procedure.output) ?? parsedAnswer(procedure.output);
    writers.set(path, opts.checkAnswers ? checked(path, write, procedure.output) : write);
  }
  const contextOf = (request: FastifyRequest): Context => ({
    principal: () => principalOf(request),
    reportError: (err) => reportError(request, err),
  });

  /** One call of the request: the procedure's caller check, input, function and output, or its error's shape. */
  async function answer(request: FastifyRequest, reply: FastifyReply, path: string, rawInput: unknown): Promise<Outcome> {
    const procedure = procedures.get(path);
    let call: ProcedureCall | undefined;
    try {
      const type = procedure?.type ?? typeOf(path);
      if (!type) throw new TRPCError({ code: 'NOT_FOUND', message: `No procedure found on path "${path}"` });
      // The method first, as tRPC's own handler does: a POST naming a subscription is a 405 with `allow`.
      if (ACCEPTED_METHOD[type] !== request.method) {
        reply.header('allow', ACCEPTED_METHOD[type]);
        throw new TRPCError({
          code: 'METHOD_NOT_SUPPORTED',
          message: `Unsupported ${request.method}-request to ${type} procedure at path "${path}"`,
        });
      }
      if (!procedure) throw new TRPCError({ code: 'BAD_REQUEST', message: 'Cannot batch subscription calls' });
      const principal = authorize(procedure.caller, await principalOf(request));
      let input = procedure.input ? parseInput(procedure.input, rawInput) : undefined;
      if (input instanceof Promise) input = await input;
      call = new ProcedureCall(principal, input, reply);
      const data = await procedure.run(call);
      return { json: writers.get(path)!(data), status: 200 };
    } catch (cause) {
      const error = toTrpcError(cause, (err) => reportError(request, err));
      const type = typeOf(path) ?? 'unknown';
      const shape = getErrorShape({ config, error, type, path, input: rawInput, ctx: contextOf(request) });
      return { json: JSON.stringify({ error: shape }), status: shape.data.httpStatus };
    } finally {
      call?.answered();
    }
  }

  await app.register(async (scope) => {
    // As the stock plugin does: the body arrives as a string (parsed here, per the protocol),
    // multipart bodies as a stream for the stock adapter.
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: opts.maxBodySize }, (_req, body, done) =>
      done(null, body),
    );
    scope.removeContentTypeParser('multipart/form-data');
    scope.addContentTypeParser('multipart/form-data', {}, (_req, body, done) => done(null, body));

    const stock = (request: FastifyRequest, reply: FastifyReply, path: string) =>
      fastifyRequestHandler({
        router,
        req: request,
        res: reply,
        path,
        maxBodySize: opts.maxBodySize,
        maxBatchSize,
        createContext: () => contextOf(request),
      });

    // A wildcard, not `:path`: a batch's comma-joined paths outgrow the router's 500-character parameter cap.
    scope.all(`${opts.prefix}/*`, async (request, reply) => {
      const path = (request.params as { '*': string })['*'];
      const query = request.query as Record<string, string | undefined>;
      const type = contentTypeOf(request);
      const isBatch = query.batch === '1';
      if (request.method === 'GET' && opts.checkSubscription && typeOf(path) === 'subscription') {
        if (await opts.checkSubscription(request, reply, path)) return reply;
      }
      if (
        (request.method !== 'GET' && request.method !== 'POST') ||
        (request.method === 'POST' && type !== 'application/json') ||
        (request.method === 'GET' && type !== undefined && type !== 'application/json') ||
        request.headers['trpc-accept'] === 'application/jsonl' ||
        request.headers.accept === 'text/event-stream' ||
        // Subscriptions stream (SSE): the stock adapter does that.
        (!isBatch && typeOf(path) === 'subscription')
      ) {
        return stock(request, reply, path);
      }
      reply.header('vary', 'trpc-accept, accept');
      reply.header('content-type', 'application/json');

      let paths: string[] | undefined;
      let raw: unknown;
      try {
        if (isBatch) {
          paths = path.split(',');
          if (paths.length > maxBatchSize) {
            throw new TRPCError({
              code: 'BAD_REQUEST',
              message: `Batch call exceeds maximum size: ${paths.length} calls, at most ${maxBatchSize} in one request`,
            });
          }
        }
        raw = readInputs(request, query);
        if (paths) {
          if (raw !== undefined && !isObject(raw)) {
            throw new TRPCError({ code: 'BAD_REQUEST', message: '"input" needs to be an object when doing a batch call' });
          }
          const types = new Set(paths.flatMap((p) => typeOf(p) ?? []));
          if (types.size > 1) {
            throw new TRPCError({ code: 'BAD_REQUEST', message: `Cannot mix procedure types in call: ${[...types].join(', ')}` });
          }
        }
      } catch (cause) {
        const error = getTRPCErrorFromUnknown(cause);
        const json = { error: getErrorShape({ config, error, type: 'unknown', path: undefined, input: undefined, ctx: undefined }) };
        return reply.code(getHTTPStatusCode(json, [error])).send(JSON.stringify(json));
      }

      if (!paths) {
        const outcome = await answer(request, reply, path, raw);
        return reply.code(outcome.status).send(outcome.json);
      }
      const inputs = raw as Record<string, unknown> | undefined;
      const outcomes = await Promise.all(paths.map((p, index) => answer(request, reply, p, inputs?.[index])));
      return reply.code(statusOf(outcomes)).send(`[${outcomes.map((o) => o.json).join(',')}]`);
    });
  });
}

/** tRPC's HTTP status: the error's, 200 for data, 207 for a batch whose calls differ. */
function statusOf(outcomes: Outcome[]): number {
  let status: number | undefined;
  for (const o of outcomes) {
    if (status !== undefined && o.status !== status) return 207;
    status = o.status;
  }
  return status ?? 200;
}

/**
 * What a procedure's function gets. Its abort signal, aborted when the client goes away
 * before the answer, is made on first use: most procedures never read it, and an
 * AbortSignal with a listener on the response is a measurable part of a cached call.
 */
class ProcedureCall implements Call<unknown> {
  #controller: AbortController | undefined;
  #onClose: (() => void) | undefined;
  constructor(
    readonly principal: Principal,
    readonly input: unknown,
    private readonly reply: FastifyReply,
  ) {}

  get signal(): AbortSignal {
    if (!this.#controller) {
      const controller = new AbortController();
      const response = this.reply.raw;
      this.#controller = controller;
      if (response.destroyed) controller.abort();
      else {
        this.#onClose = () => {
          if (!response.writableFinished) controller.abort();
        };
        response.once('close', this.#onClose);
      }
    }
    return this.#controller.signal;
  }

  /** The call has its answer: a close from now on is not the client leaving early. */
  answered(): void {
    if (this.#onClose) this.reply.raw.off('close', this.#onClose);
  }
}

/**
 * The call's input by its schema; a mismatch is tRPC's BAD_REQUEST with the issues (the
 * formatter words the message). Synchronous, as tRPC parses (no promise to wait for on the
 * hot path), unless the schema has an async check: then a promise of the input.
 */
function parseInput(schema: z.ZodType, raw: unknown): unknown {
  let r: z.ZodSafeParseResult<unknown>;
  try {
    r = schema.safeParse(raw);
  } catch (err) {
    if (!(err instanceof z.core.$ZodAsyncError)) throw err;
    return schema.safeParseAsync(raw).then(inputOf);
  }
  return inputOf(r);
}

function inputOf(r: z.ZodSafeParseResult<unknown>): unknown {
  if (r.success) return r.data;
  throw new TRPCError({ code: 'BAD_REQUEST', message: 'Input validation failed', cause: r.error });
}

/** The request's input(s): `?input=` JSON for GET, the JSON body for POST; undefined when absent. */
function readInputs(request: FastifyRequest, query: Record<string, string | undefined>): unknown {
  const text = request.method === 'GET' ? query.input : (request.body as string | undefined);
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new TRPCError({ code: 'BAD_REQUEST', message: cause instanceof Error ? cause.message : 'invalid JSON', cause });
  }
}
