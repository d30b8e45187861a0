/**
 * tRPC queries and mutations served by Fastify directly, speaking tRPC 11's HTTP wire
 * protocol (what `httpLink` and `httpBatchLink` send): `GET /trpc/<path>?input=<json>` for
 * queries, `POST /trpc/<path>` with a JSON body for mutations, `?batch=1` with comma-separated
 * paths and inputs keyed by index, `{ result: { data } }` / `{ error: shape }` answers with
 * the router's error formatter, and tRPC's HTTP status (207 for a batch of mixed statuses).
 *
 * Why not the stock Fastify adapter for these: it turns every request into a WHATWG
 * Request and every answer into a Response streamed back through Fastify, and combines
 * abort signals per call. Profiled under autocannon (bench/README.md, figure 2b) that was
 * ~80% of the CPU of a cached `versions.active`, ~8× the REST route's. Here a request
 * costs one JSON.parse, the procedure (its middlewares, input and output validation, as
 * before) and one JSON.stringify.
 *
 * Everything else goes to the stock adapter unchanged: subscriptions (SSE,
 * `httpSubscriptionLink`), streamed batches (`httpBatchStreamLink`, `accept:
 * application/jsonl`), non-JSON bodies, and methods other than GET and POST.
 */
import { fastifyRequestHandler } from '@trpc/server/adapters/fastify';
import type { AnyTRPCRouter, inferRouterContext } from '@trpc/server';
import {
  type AnyProcedure,
  TRPCError,
  getErrorShape,
  getHTTPStatusCode,
  getProcedureAtPath,
  getTRPCErrorFromUnknown,
  transformTRPCResponse,
} from '@trpc/server/unstable-core-do-not-import';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export type TrpcRouteOptions<TRouter extends AnyTRPCRouter> = {
  router: TRouter;
  /** The procedure context of one request (called once per HTTP request, also for a batch). */
  createContext: (request: FastifyRequest) => inferRouterContext<TRouter> | Promise<inferRouterContext<TRouter>>;
  /** Largest JSON body, in bytes. */
  maxBodySize: number;
  /** Most calls in one `?batch=1` request; more are refused whole with BAD_REQUEST. */
  maxBatchSize: number;
};

const ACCEPTED_METHOD: Record<string, string> = { query: 'GET', mutation: 'POST', subscription: 'GET' };

type Call = { path: string; index: number; procedure: AnyProcedure | null; input: unknown };
type Outcome = { result: { data: unknown } } | { error: unknown };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function contentTypeOf(request: FastifyRequest): string | undefined {
  return request.headers['content-type']?.split(';', 1)[0]?.trim().toLowerCase();
}

/** Registers `ALL <prefix>/*`: the fast path for queries and mutations, the stock adapter for the rest. */
export async function trpcRoutes<TRouter extends AnyTRPCRouter>(
  app: FastifyInstance,
  opts: TrpcRouteOptions<TRouter> & { prefix: string },
): Promise<void> {
  const { router, maxBatchSize } = opts;
  const config = router._def._config;
  const createContext = opts.createContext as (request: FastifyRequest) => unknown;

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
        createContext: () => createContext(request) as never,
      });

    // A wildcard, not `:path`: a batch's comma-joined paths outgrow the router's 500-character parameter cap.
    scope.all(`${opts.prefix}/*`, async (request, reply) => {
      const path = (request.params as { '*': string })['*'];
      const query = request.query as Record<string, string | undefined>;
      const type = contentTypeOf(request);
      const isBatch = query.batch === '1';
      if (
        (request.method !== 'GET' && request.method !== 'POST') ||
        (request.method === 'POST' && type !== 'application/json') ||
        (request.method === 'GET' && type !== undefined && type !== 'application/json') ||
        request.headers['trpc-accept'] === 'application/jsonl' ||
        request.headers.accept === 'text/event-stream'
      ) {
        return stock(request, reply, path);
      }
      const paths = isBatch ? path.split(',') : [path];
      if (!isBatch) {
        const procedure = await getProcedureAtPath(router, path);
        // Subscriptions stream (SSE): the stock adapter does that.
        if (procedure?._def.type === 'subscription') return stock(request, reply, path);
      }
      reply.header('vary', 'trpc-accept, accept');
      reply.header('content-type', 'application/json');

      let calls: Call[];
      let ctx: unknown;
      try {
        if (isBatch && paths.length > maxBatchSize) {
          throw new TRPCError({
            code: 'BAD_REQUEST',
            message: `Batch call exceeds maximum size: ${paths.length} calls, at most ${maxBatchSize} in one request`,
          });
        }
        const raw = readInputs(request, query);
        if (isBatch && raw !== undefined && !isObject(raw)) {
          throw new TRPCError({ code: 'BAD_REQUEST', message: '"input" needs to be an object when doing a batch call' });
        }
        calls = await Promise.all(
          paths.map(async (p, index) => {
            const input = isBatch ? (raw as Record<string, unknown> | undefined)?.[index] : raw;
            return {
              path: p,
              index,
              procedure: await getProcedureAtPath(router, p),
              input: input === undefined ? undefined : config.transformer.input.deserialize(input),
            };
          }),
        );
        const types = new Set(calls.flatMap((c) => (c.procedure ? [c.procedure._def.type] : [])));
        if (types.size > 1) {
          throw new TRPCError({ code: 'BAD_REQUEST', message: `Cannot mix procedure types in call: ${[...types].join(', ')}` });
        }
        ctx = await createContext(request);
      } catch (cause) {
        const error = getTRPCErrorFromUnknown(cause);
        const json = { error: getErrorShape({ config, error, type: 'unknown', path: undefined, input: undefined, ctx: undefined }) };
        return reply.code(getHTTPStatusCode(json, [error])).send(JSON.stringify(transformTRPCResponse(config, json)));
      }

      // One signal per request (not per call): aborted when the client goes away before the answer.
      const abort = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableFinished) abort.abort();
      };
      reply.raw.once('close', onClose);

      const errors: (TRPCError | undefined)[] = [];
      const outcomes = await Promise.all(
        calls.map(async (call): Promise<Outcome> => {
          try {
            const { procedure } = call;
            if (!procedure) throw new TRPCError({ code: 'NOT_FOUND', message: `No procedure found on path "${call.path}"` });
            const type = procedure._def.type;
            if (ACCEPTED_METHOD[type] !== request.method) {
              reply.header('allow', ACCEPTED_METHOD[type]);
              throw new TRPCError({
                code: 'METHOD_NOT_SUPPORTED',
                message: `Unsupported ${request.method}-request to ${type} procedure at path "${call.path}"`,
              });
            }
            if (type === 'subscription') throw new TRPCError({ code: 'BAD_REQUEST', message: 'Cannot batch subscription calls' });
            const data = await procedure({
              path: call.path,
              getRawInput: async () => call.input,
              ctx,
              type,
              signal: abort.signal,
              batchIndex: call.index,
            });
            return { result: { data } };
          } catch (cause) {
            const error = getTRPCErrorFromUnknown(cause);
            errors[call.index] = error;
            const type = call.procedure?._def.type ?? 'unknown';
            return { error: getErrorShape({ config, error, type, path: call.path, input: call.input, ctx }) };
          }
        }),
      );
      reply.raw.off('close', onClose);
      const status = getHTTPStatusCode(outcomes as never, errors as TRPCError[]);
      const body = transformTRPCResponse(config, (isBatch ? outcomes : outcomes[0]) as never);
      return reply.code(status).send(JSON.stringify(body));
    });
  });
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
