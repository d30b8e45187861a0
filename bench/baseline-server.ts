/**
 * `node --import tsx bench/baseline-server.ts <database url>`: the baseline of figures 1
 * and 2. A bare Fastify route doing the one SELECT the active version needs, on the view,
 * with postgres.js: no auth, no validation, no tRPC, no URL signing. Prints `READY <url>`.
 */
import Fastify from 'fastify';
import postgres from 'postgres';

const databaseUrl = process.argv[2];
if (!databaseUrl) {
  console.error('usage: baseline-server.ts <database url>');
  process.exit(64);
}
// The registry's pool size (SWARM_DB_POOL_SIZE default).
const sql = postgres(databaseUrl, { max: 10, onnotice: () => {} });
const app = Fastify({ logger: false });
app.get<{ Params: { id: string } }>('/baseline/:id', async (request, reply) => {
  const [row] = await sql`select * from active_workflow_versions where workflow_id = ${request.params.id}`;
  if (!row) return reply.status(404).send({ error: 'not found' });
  return row;
});
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`READY ${url}\n`);
const stop = () =>
  app
    .close()
    .then(() => sql.end())
    .then(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('close', stop);
