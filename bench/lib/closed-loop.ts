/**
 * The load loop of the load processes (sdk-load.ts, insert-load.ts): `concurrency` callers
 * each await `call` again and again until `seconds` are up. The summary is the line such a
 * process prints: requests, errors (and the last one's message), requests per second, p99
 * latency (ms), and this process's CPU per request (µs) while the callers ran.
 */
import { percentile } from './stats.js';

export type LoadSummary = {
  requests: number;
  errors: number;
  lastError: string | undefined;
  rps: number;
  p99: number;
  cpuUsPerRequest: number;
};

export async function closedLoop(seconds: number, concurrency: number, call: () => Promise<unknown>): Promise<LoadSummary> {
  const latencies: number[] = [];
  let errors = 0;
  let lastError: string | undefined;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t = performance.now();
        try {
          await call();
          latencies.push(performance.now() - t);
        } catch (err) {
          errors++;
          lastError = (err as Error).message;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    requests: latencies.length,
    errors,
    lastError,
    rps: latencies.length / elapsed,
    p99: percentile(latencies, 99),
    cpuUsPerRequest: (cpu.user + cpu.system) / Math.max(1, latencies.length),
  };
}
