/**
 * `node --import tsx bench/insert-load.ts <database url> <workflow id> <version id> <seconds> <concurrency> <pool>`:
 * figure 6b's baseline, in a process of its own. `concurrency` callers each run a bare
 * `INSERT … RETURNING *` (one durable commit each) into a copy of the executions table
 * (`LIKE executions INCLUDING ALL`: same columns, defaults, checks and indexes, no foreign
 * keys) through postgres.js with `pool` connections, in a loop until the time is up.
 * Prints one JSON line: inserts, errors, inserts per second, p99 latency (ms), and this
 * process's CPU per insert (µs).
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { closedLoop } from './lib/closed-loop.js';

const [databaseUrl, workflowId, versionId, seconds, concurrency, pool] = process.argv.slice(2);
if (!databaseUrl || !workflowId || !versionId || !seconds || !concurrency || !pool) {
  console.error('usage: insert-load.ts <database url> <workflow id> <version id> <seconds> <concurrency> <pool>');
  process.exit(64);
}
const sql = postgres(databaseUrl, { max: Number(pool), onnotice: () => {} });
await sql`create table if not exists bench_spawn_baseline (like executions including all)`;
const summary = await closedLoop(
  Number(seconds),
  Number(concurrency),
  () => sql`insert into bench_spawn_baseline (workflow_id, version_id, agent_token_hash, agent_token_expires_at, spawned_by)
    values (${workflowId}, ${versionId}, ${randomBytes(32).toString('hex')}, now() + interval '10 minutes', 'bench')
    returning *`,
);
await sql.end();
console.log(JSON.stringify(summary));
