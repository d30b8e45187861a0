import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ping } from '../db/queries/system.js';
import type { Deps, Principal } from '../services/context.js';
import { withTimeout } from '../timeout.js';

const CHECK_TIMEOUT_MS = 3000;

/** null when the dependency answers, else why not (for the log and for operators, never for anonymous callers). */
async function probe(fn: () => Promise<unknown>, what: string): Promise<string | null> {
  try {
    await withTimeout(fn(), what, CHECK_TIMEOUT_MS);
    return null;
  } catch (err) {
    return (err as Error).message || (err as { code?: string }).code || 'unreachable';
  }
}

/** Admin and orchestrator tokens see why a dependency is down; anyone else only that it is. */
async function seesDetails(principalOf: (request: FastifyRequest) => Promise<Principal | null>, request: FastifyRequest) {
  if (!request.headers.authorization) return false;
  // Checking a minted token needs the database, which may be what is down: then no details.
  const p = await principalOf(request).catch(() => null);
  return p?.scope === 'admin' || p?.scope === 'orchestrator';
}

/**
 * GET /healthz (no token needed): checks PostgreSQL and the object store; 503 names what
 * is down. Without an admin or orchestrator token each check says only "ok" or "down"
 * (an error's text can name paths, hosts or addresses); the reasons go to the log.
 */
export async function healthRoutes(
  app: FastifyInstance,
  { deps, principalOf }: { deps: Deps; principalOf: (request: FastifyRequest) => Promise<Principal | null> },
) {
  app.get('/healthz', async (request, reply) => {
    const [database, storage] = await Promise.all([
      probe(() => ping(deps.db), 'database'),
      probe(() => deps.store.driver.check(), 'storage'),
    ]);
    const reasons = { database, storage };
    const down = Object.entries(reasons).filter(([, reason]) => reason !== null);
    if (down.length) request.log.warn({ down: Object.fromEntries(down) }, 'health check: a dependency is down');
    const details = down.length > 0 && (await seesDetails(principalOf, request));
    const check = (reason: string | null) => (reason === null ? 'ok' : details ? `down: ${reason}` : 'down');
    return reply.status(down.length ? 503 : 200).send({
      status: down.length ? `unavailable: ${down.map(([name]) => name).join(', ')}` : 'ok',
      checks: { database: check(database), storage: check(storage) },
    });
  });
}
