/**
 * `node --import tsx bench/sdk-load.ts <url> <token> <workflow> <seconds> <concurrency>`:
 * figure 2's load generator, in a process of its own. `concurrency` callers each resolve
 * the active version through the SDK (tRPC `versions.active`) in a loop until the time is
 * up. Prints one JSON line: requests, errors, requests per second, p99 latency (ms).
 */
import { createSwarmClient } from '../packages/sdk/src/index.js';
import { percentile } from './lib/stats.js';

const [url, token, workflow, seconds, concurrency] = process.argv.slice(2);
if (!url || !token || !workflow || !seconds || !concurrency) {
  console.error('usage: sdk-load.ts <url> <token> <workflow> <seconds> <concurrency>');
  process.exit(64);
}
const client = createSwarmClient({ url, token });
const latencies: number[] = [];
let errors = 0;
const started = performance.now();
const deadline = started + Number(seconds) * 1000;
await Promise.all(
  Array.from({ length: Number(concurrency) }, async () => {
    while (performance.now() < deadline) {
      const t = performance.now();
      try {
        await client.resolveActive(workflow);
        latencies.push(performance.now() - t);
      } catch {
        errors++;
      }
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
console.log(JSON.stringify({ requests: latencies.length, errors, rps: latencies.length / elapsed, p99: percentile(latencies, 99) }));
