import type { FastifyInstance } from 'fastify';
import { ping } from '../db/queries/system.js';
import type { Deps } from '../services/context.js';
import { withTimeout } from '../timeout.js';

const CHECK_TIMEOUT_MS = 3000;

async function probe(fn: () => Promise<unknown>, what: string): Promise<string> {
  try {
    await withTimeout(fn(), what, CHECK_TIMEOUT_MS);
    return 'ok';
  } catch (err) {
    return `down: ${(err as Error).message || (err as { code?: string }).code || 'unreachable'}`;
  }
}

/** GET /healthz (no token needed): checks PostgreSQL and the object store; 503 names what is down. */
export async function healthRoutes(app: FastifyInstance, { deps }: { deps: Deps }) {
  app.get('/healthz', async (_request, reply) => {
    const [database, storage] = await Promise.all([
      probe(() => ping(deps.db), 'database'),
      probe(() => deps.store.driver.check(), 'storage'),
    ]);
    const down = [database !== 'ok' && 'database', storage !== 'ok' && 'storage'].filter(Boolean);
    return reply
      .status(down.length ? 503 : 200)
      .send({ status: down.length ? `unavailable: ${down.join(', ')}` : 'ok', checks: { database, storage } });
  });
}
