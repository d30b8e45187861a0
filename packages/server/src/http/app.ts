/** The HTTP server: Fastify with tRPC at /trpc, the REST routes, downloads, health and metrics. */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import { requireOrchestrator } from '../services/access.js';
import { authenticate } from '../services/auth.js';
import type { Deps, Principal } from '../services/context.js';
import { FsDriver } from '../storage/fs.js';
import { createApi } from '../trpc/router.js';
import { blobRoutes } from './blobs.js';
import { sendError } from './errors.js';
import { healthRoutes } from './health.js';
import { createMetrics } from './metrics.js';
import { openApiRoutes } from './openapi.js';
import { restRoutes } from './rest.js';
import { trpcRoutes } from './trpc-native.js';
import { subscriptionGuard } from './subscription-guard.js';
import { executionSubscriptions } from '../trpc/routers/executions.js';

/** Largest JSON body a tRPC call may send; bundles never travel through tRPC. */
const TRPC_MAX_BODY_BYTES = 1024 * 1024;
/**
 * Most calls in one tRPC batch request (`?batch=1`). The calls of a batch run side by side
 * and the answer waits for the slowest: an unbounded batch lets one request take the whole
 * database pool and grow one response without limit. The SDK's httpBatchLink sends at most
 * 50 (its maxItems); fan-out to many executions is executions.spawnMany, one call.
 */
export const TRPC_MAX_BATCH_CALLS = 100;

export type RouteEntry = { method: string; url: string };
const routeTables = new WeakMap<FastifyInstance, RouteEntry[]>();
/** Every route the app registered, as registered (test/openapi.test.ts checks the OpenAPI document against it). */
export const registeredRoutes = (app: FastifyInstance): RouteEntry[] => routeTables.get(app) ?? [];

export async function buildApp(deps: Deps & { adminTokenHash: Buffer }, logger: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: TRPC_MAX_BODY_BYTES,
    // Bundles are long uploads: no overall request timeout, but a connection that
    // sends nothing for SWARM_IDLE_TIMEOUT_SECONDS is dropped (see docs/operations.md).
    requestTimeout: 0,
    connectionTimeout: deps.config.idleTimeoutMs,
    keepAliveTimeout: 72_000,
    routerOptions: { maxParamLength: 500 },
  });
  const metrics = createMetrics();
  const routes: RouteEntry[] = [];
  routeTables.set(app, routes);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) routes.push({ method, url: r.url });
  });

  const principalCache = new WeakMap<FastifyRequest, Promise<Principal | null>>();
  const resolvePrincipal = (request: FastifyRequest) => {
    let p = principalCache.get(request);
    if (!p) {
      p = authenticate(deps, request.headers.authorization);
      principalCache.set(request, p);
    }
    return p;
  };
  const principalOf = async (request: FastifyRequest): Promise<Principal> => {
    const p = await resolvePrincipal(request);
    if (!p || p.scope === 'agent') throw new RegistryError('UNAUTHORIZED', 'missing or invalid bearer token');
    return p;
  };

  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler((request, reply) =>
    sendError(request, reply, new RegistryError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  );

  const api = createApi(deps);
  // One label per procedure, made once; paths are the client's choice: batches and unknown names share one each.
  const procedureLabels = new Map(Object.keys(api.router._def.procedures).map((path) => [path, `/trpc/${path}`]));
  app.addHook('onResponse', async (request, reply) => {
    let route = request.routeOptions.url ?? 'unmatched';
    if (route === '/trpc/*') {
      const path = (request.params as { '*': string })['*'];
      route = procedureLabels.get(path) ?? (path.includes(',') ? '/trpc/(batch)' : '/trpc/(unknown)');
    }
    metrics.requests.inc({ method: request.method, route, status: reply.statusCode });
    metrics.latency.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  await app.register(healthRoutes, { deps, principalOf: resolvePrincipal });
  await app.register(openApiRoutes);
  // Metrics describe every tenant's traffic (upload sizes among it): operators only.
  app.get('/metrics', async (request, reply) => {
    requireOrchestrator(await principalOf(request));
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  await app.register(restRoutes, { deps, metrics, principalOf });
  if (deps.store.driver instanceof FsDriver) await app.register(blobRoutes, { driver: deps.store.driver });

  await trpcRoutes(app, {
    prefix: '/trpc',
    router: api.router,
    procedures: api.procedures,
    maxBodySize: TRPC_MAX_BODY_BYTES,
    maxBatchSize: TRPC_MAX_BATCH_CALLS,
    checkAnswers: deps.config.checkAnswers,
    principalOf: resolvePrincipal,
    // SSE subscriptions are refused (401/403/404) before their stream starts.
    checkSubscription: subscriptionGuard({ subscriptions: executionSubscriptions(deps), principalOf: resolvePrincipal }),
    reportError: (request, err) => request.log.error({ err }, 'request failed'),
  });
  return app;
}
