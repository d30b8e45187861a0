/**
 * Figures 1, 2 and 6: resolving the active version (REST with autocannon, tRPC through the
 * SDK), and a burst of 500 concurrent spawns. All against one registry process with an
 * orchestrator token (what an orchestrator uses: authenticating it is a database lookup),
 * and a bare Fastify + postgres.js route on the same database as the baseline.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { bundle } from '../packages/boot-agent/test/support/archives.js';
import path from 'node:path';
import autocannon from 'autocannon';
import { createSwarmClient } from '../packages/sdk/src/index.js';
import { startService } from '../test/support/service.js';
import { type BenchEnv, root } from './lib/env.js';
import { type FigureContext, type Row, row } from './lib/figure.js';
import { percentile, summarize } from './lib/stats.js';

type Load = { rps: number; p99: number; errors: number; non2xx: number };

async function cannon(url: string, seconds: number, headers: Record<string, string> = {}): Promise<Load> {
  const r = await autocannon({ url, connections: 50, duration: seconds, headers });
  return { rps: r.requests.average, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx };
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: root, timeout: 120_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** 500 requests at once; the latency of each, in ms. */
async function burst(n: number, call: () => Promise<unknown>): Promise<{ p99: number; failed: number }> {
  const latencies: number[] = [];
  let failed = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      const t = performance.now();
      try {
        await call();
        latencies.push(performance.now() - t);
      } catch {
        failed++;
      }
    }),
  );
  return { p99: latencies.length ? percentile(latencies, 99) : Number.NaN, failed };
}

export async function resolveFigures(env: BenchEnv, ctx: FigureContext, only: (id: string) => boolean): Promise<Row[]> {
  const reg = await env.startRegistry();
  const admin = reg.client;
  await admin.call(() => admin.trpc.tenants.create.mutate({ slug: 'bench' }));
  const wf = await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'bench', name: 'app' }));
  const res = await fetch(`${reg.url}/internal/bundles?workflow=bench/app&activate=true`, {
    method: 'POST',
    headers: { authorization: `Bearer ${reg.token}`, 'content-type': 'application/gzip' },
    body: bundle([{ path: 'data.bin', body: randomBytes(4096) }]).bytes,
  });
  if (res.status !== 201) throw new Error(`setup upload failed: ${res.status} ${await res.text()}`);
  const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'bench' }));
  const auth = { authorization: `Bearer ${token}` };
  const ours = `${reg.url}/internal/workflow/${wf.id}/active`;

  const baselineServer = await startService('baseline server', process.execPath, [
    '--import',
    'tsx',
    path.join(root, 'bench/baseline-server.ts'),
    reg.databaseUrl,
  ]);
  const baseline = `${baselineServer.url}/baseline/${wf.id}`;
  const rows: Row[] = [];
  try {
    // Warm both up (JIT, connection pools) before anything is measured.
    await cannon(baseline, 2);
    await cannon(ours, 2, auth);

    const base: Load[] = [];
    if (only('1') || only('2')) {
      const rest: Load[] = [];
      const sdk: Load[] = [];
      for (let i = 0; i < ctx.runs; i++) {
        base.push(await cannon(baseline, ctx.duration));
        ctx.log(`  baseline run ${i + 1}: ${base.at(-1)!.rps.toFixed(0)} req/s, p99 ${base.at(-1)!.p99} ms`);
        if (only('1')) {
          rest.push(await cannon(ours, ctx.duration, auth));
          ctx.log(`  #1 REST run ${i + 1}: ${rest.at(-1)!.rps.toFixed(0)} req/s, p99 ${rest.at(-1)!.p99} ms`);
        }
        if (only('2')) {
          const out = await run(process.execPath, [
            '--import',
            'tsx',
            'bench/sdk-load.ts',
            reg.url,
            token,
            wf.id,
            String(ctx.duration),
            '50',
          ]);
          sdk.push(JSON.parse(out.trim().split('\n').at(-1)!) as Load);
          ctx.log(`  #2 SDK run ${i + 1}: ${sdk.at(-1)!.rps.toFixed(0)} req/s, p99 ${sdk.at(-1)!.p99.toFixed(1)} ms`);
        }
      }
      const baseRps = summarize(base.map((l) => l.rps));
      const baseP99 = summarize(base.map((l) => l.p99));
      const baselineWhat = 'bare Fastify + postgres.js, one SELECT on active_workflow_versions, no auth (autocannon, 50 connections)';
      if (only('1')) {
        const notes = {
          errors: rest.reduce((n, l) => n + l.errors + l.non2xx, 0),
          baselineErrors: base.reduce((n, l) => n + l.errors + l.non2xx, 0),
        };
        rows.push(
          row({
            id: '1a',
            what: 'GET /internal/workflow/:id/active throughput',
            unit: 'req/s',
            baselineWhat,
            baseline: baseRps,
            ours: summarize(rest.map((l) => l.rps)),
            target: { on: 'ratio', op: '>=', value: 1.0 },
            notes,
          }),
        );
        rows.push(
          row({
            id: '1b',
            what: 'GET /internal/workflow/:id/active p99',
            unit: 'ms',
            baselineWhat,
            baseline: baseP99,
            ours: summarize(rest.map((l) => l.p99)),
            target: { on: 'ratio', op: '<=', value: 1.0 },
          }),
        );
      }
      if (only('2')) {
        rows.push(
          row({
            id: '2',
            what: 'tRPC versions.active through the SDK client, throughput',
            unit: 'req/s',
            baselineWhat,
            baseline: baseRps,
            ours: summarize(sdk.map((l) => l.rps)),
            target: { on: 'ratio', op: '>=', value: 0.8 },
            notes: { p99Ms: summarize(sdk.map((l) => l.p99)), errors: sdk.reduce((n, l) => n + l.errors, 0) },
          }),
        );
      }
    }

    if (only('6')) {
      const N = 500;
      const spawnP99: number[] = [];
      const resolveP99: number[] = [];
      let spawnFailed = 0;
      let resolveFailed = 0;
      const orchestrator = createSwarmClient({ url: reg.url, token });
      for (let i = 0; i < ctx.runs; i++) {
        const r = await burst(N, async () => {
          const res = await fetch(ours, { headers: auth });
          if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
          await res.arrayBuffer();
        });
        resolveP99.push(r.p99);
        resolveFailed += r.failed;
        const s = await burst(N, () => orchestrator.trpc.executions.spawn.mutate({ workflow: wf.id }));
        spawnP99.push(s.p99);
        spawnFailed += s.failed;
        ctx.log(
          `  #6 run ${i + 1}: ${N} resolves p99 ${r.p99.toFixed(0)} ms (${r.failed} failed), ${N} spawns p99 ${s.p99.toFixed(0)} ms (${s.failed} failed)`,
        );
      }
      rows.push(
        row({
          id: '6',
          what: `${N} concurrent executions.spawn, p99`,
          unit: 'ms',
          baselineWhat: `${N} concurrent GET /internal/workflow/:id/active`,
          baseline: summarize(resolveP99),
          ours: summarize(spawnP99),
          target: { on: 'ratio', op: '<=', value: 5 },
          notes: { spawnFailed, resolveFailed, allSucceeded: spawnFailed === 0 },
        }),
      );
      if (spawnFailed > 0) rows.at(-1)!.met = false;
    }
  } finally {
    await baselineServer.stop();
    await reg.stop('SIGTERM');
  }
  return rows;
}
