/**
 * `node --import tsx bench/sdk-load.ts <url> <token> <workflow> <seconds> <concurrency> [mode]`:
 * the SDK load generator of figures 2, 2c and 6b, in a process of its own. `concurrency`
 * callers each call the registry through the SDK in a loop until the time is up:
 * mode `resolve` (default) resolves the active version (tRPC `versions.active`, httpLink),
 * `resolve-batch` does the same through httpBatchLink, `spawn` calls `executions.spawn`.
 * Prints one JSON line: requests, errors, requests per second, p99 latency (ms), and this
 * process's CPU per request (µs) while the callers ran. With SWARM_BENCH_PROFILE=<dir> it also
 * writes a V8 CPU profile of the load loop alone (not the start) there: `sdk-load-<mode>-<pid>.cpuprofile`.
 */
import fs from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { createSwarmClient } from '../packages/sdk/src/index.js';
import { closedLoop } from './lib/closed-loop.js';

const [url, token, workflow, seconds, concurrency, mode = 'resolve'] = process.argv.slice(2);
if (!url || !token || !workflow || !seconds || !concurrency || !['resolve', 'resolve-batch', 'spawn'].includes(mode)) {
  console.error('usage: sdk-load.ts <url> <token> <workflow> <seconds> <concurrency> [resolve|resolve-batch|spawn]');
  process.exit(64);
}
const client = createSwarmClient({ url, token, batch: mode === 'resolve-batch' });
const call =
  mode === 'spawn' ? () => client.call(() => client.trpc.executions.spawn.mutate({ workflow })) : () => client.resolveActive(workflow);
const profileDir = process.env.SWARM_BENCH_PROFILE;
const profiler = profileDir ? new Session() : undefined;
if (profiler) {
  profiler.connect();
  await profiler.post('Profiler.enable');
  await profiler.post('Profiler.start');
}
const summary = await closedLoop(Number(seconds), Number(concurrency), call);
if (profiler && profileDir) {
  const { profile } = await profiler.post('Profiler.stop');
  await fs.mkdir(profileDir, { recursive: true });
  await fs.writeFile(path.join(profileDir, `sdk-load-${mode}-${process.pid}.cpuprofile`), JSON.stringify(profile));
}
console.log(JSON.stringify(summary));
