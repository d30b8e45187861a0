/**
 * Figures 1, 2, 2b, 2c, 6, 6b and 6c: resolving the active version (REST with autocannon,
 * tRPC with autocannon and through the SDK, batched and not), a burst of 500 concurrent
 * spawns, sustained spawns, and spawnMany. All against one registry process with an
 * orchestrator token (what an orchestrator uses: authenticating it is a database lookup);
 * baselines: a bare Fastify + postgres.js route on the same database, the REST route, a bare
 * INSERT … RETURNING through postgres.js, one spawn.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { bundle } from '../packages/boot-agent/test/support/archives.js';
import path from 'node:path';
import autocannon from 'autocannon';
import { createSwarmClient } from '../packages/sdk/src/index.js';
import { connectDatabase } from '../packages/server/src/db/client.js';
import { type ExecutionToSpawn, insertSpawnedExecutions } from '../packages/server/src/db/queries/executions.js';
import { startService } from '../test/support/service.js';
import { type BenchEnv, postgresCpuMs, procCpuMs, root } from './lib/env.js';
import { type FigureContext, type Row, row } from './lib/figure.js';
import { percentile, summarize } from './lib/stats.js';

/** One load run; `cpuUsPerRequest`: the load generator's own CPU per request (its own processes only). */
type Load = { rps: number; p99: number; errors: number; non2xx: number; cpuUsPerRequest?: number };

/** The registry's database pool (SWARM_DB_POOL_SIZE default), also the #6b baseline's. */
const POOL_SIZE = 10;

async function cannon(
  url: string,
  seconds: number,
  headers: Record<string, string> = {},
  request: { method?: 'POST'; body?: string } = {},
): Promise<Load> {
  const r = await autocannon({ url, connections: 50, duration: seconds, headers, ...request });
  return { rps: r.requests.average, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx };
}

/** A load generator in a process of its own (bench/sdk-load.ts, bench/insert-load.ts): its last line, parsed. */
async function loadProcess(script: string, args: string[]): Promise<Load> {
  const out = await run(process.execPath, ['--import', 'tsx', script, ...args]);
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as Load & { errors: number };
  return { ...r, non2xx: 0 };
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
          sdk.push(await loadProcess('bench/sdk-load.ts', [reg.url, token, wf.id, String(ctx.duration), '50']));
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

    if (only('2b')) {
      // The same registry, the same cached answer: the REST route against the tRPC route
      // (queries as GET ?input=, a mutation as POST), autocannon for both.
      const q = (procedure: string, input: unknown) => `${reg.url}/trpc/${procedure}?input=${encodeURIComponent(JSON.stringify(input))}`;
      const json = { ...auth, 'content-type': 'application/json' };
      const loads: Record<'rest' | 'active' | 'get' | 'mutation', Load[]> = { rest: [], active: [], get: [], mutation: [] };
      const body = JSON.stringify({ tenant: 'bench', name: 'app' });
      // The tRPC routes warmed up (JIT) as the REST route was above, before anything is measured.
      await cannon(q('versions.active', { workflow: wf.id }), 2, auth);
      await cannon(q('workflows.get', { workflow: wf.id }), 2, auth);
      await cannon(`${reg.url}/trpc/workflows.create`, 2, json, { method: 'POST', body });
      for (let i = 0; i < ctx.runs; i++) {
        loads.rest.push(await cannon(ours, ctx.duration, auth));
        loads.active.push(await cannon(q('versions.active', { workflow: wf.id }), ctx.duration, auth));
        loads.get.push(await cannon(q('workflows.get', { workflow: wf.id }), ctx.duration, auth));
        // A mutation answered with an error (CONFLICT, 409): the workflow exists. Nothing changes, so it can repeat.
        loads.mutation.push(await cannon(`${reg.url}/trpc/workflows.create`, ctx.duration, json, { method: 'POST', body }));
        const fmt = (l: Load) => `${l.rps.toFixed(0)} req/s p99 ${l.p99} ms`;
        ctx.log(
          `  #2b run ${i + 1}: REST ${fmt(loads.rest.at(-1)!)}; tRPC versions.active ${fmt(loads.active.at(-1)!)}, workflows.get ${fmt(loads.get.at(-1)!)}, workflows.create (409) ${fmt(loads.mutation.at(-1)!)}`,
        );
      }
      const restWhat = 'GET /internal/workflow/:id/active (autocannon, 50 connections, same registry)';
      const rps = (ls: Load[]) => summarize(ls.map((l) => l.rps));
      const errors = (ls: Load[]) => ls.reduce((n, l) => n + l.errors, 0);
      rows.push(
        row({
          id: '2b',
          what: 'GET /trpc/versions.active throughput (autocannon)',
          unit: 'req/s',
          baselineWhat: restWhat,
          baseline: rps(loads.rest),
          ours: rps(loads.active),
          target: { on: 'ratio', op: '>=', value: 0.9 },
          notes: { errors: errors(loads.active), non2xx: loads.active.reduce((n, l) => n + l.non2xx, 0) },
        }),
        row({
          id: '2b-p99',
          what: 'GET /trpc/versions.active p99 (autocannon)',
          unit: 'ms',
          baselineWhat: restWhat,
          baseline: summarize(loads.rest.map((l) => l.p99)),
          ours: summarize(loads.active.map((l) => l.p99)),
          target: { on: 'ratio', op: '<=', value: 1.2 },
        }),
        row({
          id: '2b-get',
          what: 'GET /trpc/workflows.get throughput (a second query; not cached: one SELECT)',
          unit: 'req/s',
          baselineWhat: restWhat,
          baseline: rps(loads.rest),
          ours: rps(loads.get),
          notes: { p99Ms: summarize(loads.get.map((l) => l.p99)), errors: errors(loads.get) },
        }),
        row({
          id: '2b-mutation',
          what: 'POST /trpc/workflows.create throughput (a mutation, answered 409 CONFLICT)',
          unit: 'req/s',
          baselineWhat: restWhat,
          baseline: rps(loads.rest),
          ours: rps(loads.mutation),
          notes: { p99Ms: summarize(loads.mutation.map((l) => l.p99)), errors: errors(loads.mutation) },
        }),
      );
    }

    if (only('2c')) {
      // 50 concurrent SDK callers resolving in a loop: each call its own request (httpLink)
      // against calls of the same tick batched into one request (httpBatchLink, maxItems 50).
      const single: Load[] = [];
      const batched: Load[] = [];
      for (let i = 0; i < ctx.runs; i++) {
        single.push(await loadProcess('bench/sdk-load.ts', [reg.url, token, wf.id, String(ctx.duration), '50', 'resolve']));
        batched.push(await loadProcess('bench/sdk-load.ts', [reg.url, token, wf.id, String(ctx.duration), '50', 'resolve-batch']));
        ctx.log(
          `  #2c run ${i + 1}: httpLink ${single.at(-1)!.rps.toFixed(0)} calls/s p99 ${single.at(-1)!.p99.toFixed(1)} ms, httpBatchLink ${batched.at(-1)!.rps.toFixed(0)} calls/s p99 ${batched.at(-1)!.p99.toFixed(1)} ms`,
        );
      }
      rows.push(
        row({
          id: '2c',
          what: 'versions.active through the SDK with httpBatchLink (50 concurrent callers), calls/s',
          unit: 'calls/s',
          baselineWhat: 'the same through httpLink (one request per call, kept-alive connections)',
          baseline: summarize(single.map((l) => l.rps)),
          ours: summarize(batched.map((l) => l.rps)),
          notes: {
            p99Ms: summarize(batched.map((l) => l.p99)),
            baselineP99Ms: summarize(single.map((l) => l.p99)),
            errors: batched.reduce((n, l) => n + l.errors, 0) + single.reduce((n, l) => n + l.errors, 0),
          },
        }),
      );
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
          target: { on: 'ratio', op: '<=', value: 3 },
          notes: { spawnFailed, resolveFailed, allSucceeded: spawnFailed === 0 },
        }),
      );
      if (spawnFailed > 0) rows.at(-1)!.met = false;
    }

    if (only('6b')) {
      // Sustained: 50 callers spawning in a loop through the SDK, against 50 callers doing a
      // bare INSERT … RETURNING (one commit each) into an executions-shaped table, same pool size.
      // The same 50 callers against a registry that does nothing (spawn-stub.ts, a real spawn
      // answer) give the callers' own ceiling on this machine; each process's CPU per call
      // says who spends the two cores.
      const active = await admin.resolveActive(wf.id);
      const orchestrator = createSwarmClient({ url: reg.url, token });
      const answer = JSON.stringify({ result: { data: await orchestrator.trpc.executions.spawn.mutate({ workflow: wf.id }) } });
      const stub = await startService('spawn stub', process.execPath, ['--import', 'tsx', path.join(root, 'bench/spawn-stub.ts'), answer]);
      const spawns: Load[] = [];
      const inserts: Load[] = [];
      const ceiling: Load[] = [];
      const registryCpuUs: number[] = [];
      const postgresCpuUs: number[] = [];
      const postgresCpuUsPerInsert: number[] = [];
      try {
        for (let i = 0; i < ctx.runs; i++) {
          const pgBeforeInserts = await postgresCpuMs();
          inserts.push(
            await loadProcess('bench/insert-load.ts', [
              reg.databaseUrl,
              wf.id,
              active.versionId,
              String(ctx.duration),
              '50',
              String(POOL_SIZE),
            ]),
          );
          postgresCpuUsPerInsert.push(
            (((await postgresCpuMs()) - pgBeforeInserts) * 1000) / Math.max(1, inserts.at(-1)!.rps * ctx.duration),
          );
          const cpuBefore = await procCpuMs(reg.child.pid!);
          const pgBefore = await postgresCpuMs();
          spawns.push(await loadProcess('bench/sdk-load.ts', [reg.url, token, wf.id, String(ctx.duration), '50', 'spawn']));
          const s = spawns.at(-1)!;
          registryCpuUs.push((((await procCpuMs(reg.child.pid!)) - cpuBefore) * 1000) / Math.max(1, s.rps * ctx.duration));
          postgresCpuUs.push((((await postgresCpuMs()) - pgBefore) * 1000) / Math.max(1, s.rps * ctx.duration));
          ceiling.push(await loadProcess('bench/sdk-load.ts', [stub.url, token, wf.id, String(ctx.duration), '50', 'spawn']));
          ctx.log(
            `  #6b run ${i + 1}: bare INSERT ${inserts.at(-1)!.rps.toFixed(0)}/s p99 ${inserts.at(-1)!.p99.toFixed(0)} ms, spawns ${s.rps.toFixed(0)}/s p99 ${s.p99.toFixed(0)} ms (${s.errors} failed); ` +
              `CPU per spawn: callers ${s.cpuUsPerRequest?.toFixed(0)} µs, registry ${registryCpuUs.at(-1)!.toFixed(0)} µs, PostgreSQL ${postgresCpuUs.at(-1)!.toFixed(0)} µs (a bare INSERT: ${postgresCpuUsPerInsert.at(-1)!.toFixed(0)} µs); the callers against a stub ${ceiling.at(-1)!.rps.toFixed(0)}/s (${ceiling.at(-1)!.cpuUsPerRequest?.toFixed(0)} µs a call)`,
          );
        }
      } finally {
        await stub.stop();
      }
      const failed = spawns.reduce((n, l) => n + l.errors, 0);
      rows.push(
        row({
          id: '6b',
          what: 'sustained executions.spawn, 50 concurrent callers through the SDK, spawns/s',
          unit: 'spawns/s',
          baselineWhat: `bare INSERT … RETURNING into LIKE executions, postgres.js, 50 concurrent, pool ${POOL_SIZE}`,
          baseline: summarize(inserts.map((l) => l.rps)),
          ours: summarize(spawns.map((l) => l.rps)),
          target: { on: 'ratio', op: '>=', value: 0.7 },
          notes: {
            p99Ms: summarize(spawns.map((l) => l.p99)),
            baselineP99Ms: summarize(inserts.map((l) => l.p99)),
            failed,
            // Where the cores go: CPU per call of each process (µs), medians of the runs.
            callersCpuUsPerSpawn: summarize(spawns.map((l) => l.cpuUsPerRequest ?? Number.NaN)).median,
            registryCpuUsPerSpawn: summarize(registryCpuUs).median,
            postgresCpuUsPerSpawn: summarize(postgresCpuUs).median,
            postgresCpuUsPerBareInsert: summarize(postgresCpuUsPerInsert).median,
            baselineCpuUsPerInsert: summarize(inserts.map((l) => l.cpuUsPerRequest ?? Number.NaN)).median,
            // The callers' ceiling: the same 50 SDK callers against a registry that answers at once.
            callersAgainstStub: summarize(ceiling.map((l) => l.rps)).median,
            callersCpuUsPerCallAgainstStub: summarize(ceiling.map((l) => l.cpuUsPerRequest ?? Number.NaN)).median,
          },
        }),
      );
      if (failed > 0) rows.at(-1)!.met = false;
    }

    if (only('6c')) {
      // One call for 100 executions against one call for one, each timed alone (sequential calls).
      const orchestrator = createSwarmClient({ url: reg.url, token });
      const timed = async (n: number, f: () => Promise<unknown>) => {
        const ms: number[] = [];
        for (let i = 0; i < n; i++) {
          const t = performance.now();
          await f();
          ms.push(performance.now() - t);
        }
        return ms;
      };
      const spawnOne = () => orchestrator.trpc.executions.spawn.mutate({ workflow: wf.id });
      const spawnHundred = () => orchestrator.trpc.executions.spawnMany.mutate({ workflow: wf.id, count: 100 });
      // Warm: each pooled connection prepares a statement the first time it runs it, and the
      // pool hands out its connections in turn, so every connection runs both calls first.
      await timed(2 * POOL_SIZE, spawnOne);
      await timed(2 * POOL_SIZE, spawnHundred);
      const oneAnswer = await spawnOne();
      const hundredAnswer = await spawnHundred();
      const one = await timed(10 * ctx.runs, spawnOne);
      const many = await timed(3 * ctx.runs, spawnHundred);
      // What carrying the answers costs whatever the registry does: the same SDK calls against
      // a stub that answers at once with those real answers (spawn-stub.ts), 1 execution's and 100's.
      const answerTimes = async (answer: unknown, call: (c: ReturnType<typeof createSwarmClient>) => Promise<unknown>) => {
        const body = JSON.stringify({ result: { data: answer } });
        const stub = await startService('spawn stub', process.execPath, ['--import', 'tsx', path.join(root, 'bench/spawn-stub.ts'), body]);
        try {
          const c = createSwarmClient({ url: stub.url, token });
          await timed(5, () => call(c));
          return await timed(10 * ctx.runs, () => call(c));
        } finally {
          await stub.stop();
        }
      };
      const answerOne = await answerTimes(oneAnswer, (c) => c.trpc.executions.spawn.mutate({ workflow: wf.id }));
      const answerHundred = await answerTimes(hundredAnswer, (c) => c.trpc.executions.spawnMany.mutate({ workflow: wf.id, count: 100 }));
      // The floor of this design: what the registry's own spawn statement (insertSpawnedExecutions
      // as the registry runs it: the items' JSON, one durable commit, the rows decoded) takes
      // longer for 100 rows than for 1, timed alternately on the same database. spawnMany(100)
      // cannot answer faster than one spawn plus that, whatever the rest of the path costs.
      const { insertOne, insertHundred, bareOne, bareHundred } = await timeSpawnInserts(reg.databaseUrl, wf.id, 10 * ctx.runs);
      // Each floor from its parts' medians (the parts are timed apart, so pairing their samples would mean nothing).
      const median = (ms: number[]) => summarize(ms).median;
      const extra = (hundred: number[], single: number[]) => median(hundred) - median(single);
      const floor = (ms: number) => summarize([ms]);
      ctx.log(
        `  #6c: one spawn median ${median(one).toFixed(1)} ms, spawnMany(100) median ${median(many).toFixed(1)} ms; ` +
          `the statement alone: 1 row ${median(insertOne).toFixed(1)} ms, 100 rows ${median(insertHundred).toFixed(1)} ms; ` +
          `a bare INSERT: 1 row ${median(bareOne).toFixed(1)} ms, 100 rows ${median(bareHundred).toFixed(1)} ms; ` +
          `the answer from a stub: 1 execution's ${median(answerOne).toFixed(2)} ms, 100's ${median(answerHundred).toFixed(2)} ms`,
      );
      rows.push(
        row({
          id: '6c',
          what: 'executions.spawnMany of 100, latency',
          unit: 'ms',
          baselineWhat: 'one executions.spawn, latency (sequential calls)',
          baseline: summarize(one),
          ours: summarize(many),
          target: { on: 'ratio', op: '<=', value: 1.5 },
        }),
        row({
          id: '6c-floor',
          what: "the floor of #6c's design: one spawn plus what its spawn statement takes longer for 100 rows than for 1",
          unit: 'ms',
          baselineWhat: 'one executions.spawn, latency (sequential calls)',
          baseline: summarize(one),
          ours: floor(median(one) + extra(insertHundred, insertOne)),
          notes: {
            statementOneRowMs: median(insertOne),
            statementHundredRowsMs: median(insertHundred),
            timedEach: insertOne.length,
            measured:
              'median of one spawn + (median of the statement for 100 rows − for 1), the statement as the registry runs it (postgres.js, drizzle), timed alternately',
          },
        }),
        row({
          id: '6c-least',
          what: 'the least spawnMany(100) can cost: one spawn, plus what 99 more rows cost to write (a bare INSERT) and 99 more answers to carry (a stub)',
          unit: 'ms',
          baselineWhat: 'one executions.spawn, latency (sequential calls)',
          baseline: summarize(one),
          ours: floor(median(one) + extra(bareHundred, bareOne) + extra(answerHundred, answerOne)),
          notes: {
            bareOneRowMs: median(bareOne),
            bareHundredRowsMs: median(bareHundred),
            answerOneMs: median(answerOne),
            answerHundredMs: median(answerHundred),
            timedEach: bareOne.length,
            measured:
              'a lower bound, from medians: one spawn + (100 rows − 1 row) of `insert into executions (…) select … from unnest($hashes) returning id` ' +
              '(the same table, indexes and foreign key, one statement and one durable commit; nothing chosen, joined or decoded) ' +
              '+ (100 − 1) of the SDK call against a stub answering the real 100- and 1-execution answers at once (bench/spawn-stub.ts: ' +
              'no serializing, no tokens, no work in the registry)',
          },
        }),
      );
    }
  } finally {
    await baselineServer.stop();
    await reg.stop('SIGTERM');
  }
  return rows;
}

/**
 * #6c's floors: the registry's spawn statement (insertSpawnedExecutions) for 1 and for 100
 * executions of the workflow, and a bare INSERT of as many rows into the same table, `n`
 * times each, alternately, every statement in its own durable commit. The rows stay in the bench's own
 * database (pending executions of the bench workflow; #6c runs last).
 */
async function timeSpawnInserts(
  databaseUrl: string,
  workflowId: string,
  n: number,
): Promise<{ insertOne: number[]; insertHundred: number[]; bareOne: number[]; bareHundred: number[] }> {
  const database = connectDatabase(databaseUrl, { poolSize: 1 });
  try {
    const items = (count: number): ExecutionToSpawn[] =>
      Array.from({ length: count }, () => ({
        workflowId,
        bucket: 50,
        routingKey: undefined,
        agentTokenHash: randomBytes(32).toString('hex'),
        agentTokenTtlSeconds: 600,
        spawnedBy: 'bench',
        timeoutSeconds: undefined,
        outputMaxBytes: 1 << 20,
      }));
    const time = async (count: number) => {
      const spawns = items(count);
      const t = performance.now();
      const rows = await insertSpawnedExecutions(database.db, spawns);
      const ms = performance.now() - t;
      if (rows.some((r) => r === undefined)) throw new Error('#6c floor: the statement stored fewer rows than asked');
      return ms;
    };
    const [{ versionId }] = await database.sql<[{ versionId: string }]>`
      select active_version_id as "versionId" from workflows where id = ${workflowId}`;
    const timeBare = async (count: number) => {
      const hashes = Array.from({ length: count }, () => randomBytes(32).toString('hex'));
      const t = performance.now();
      const rows = await database.sql`
        insert into executions (workflow_id, version_id, agent_token_hash, spawned_by)
        select ${workflowId}, ${versionId}, h, 'bench' from unnest(${database.sql.array(hashes)}::text[]) as h returning id`;
      const ms = performance.now() - t;
      if (rows.length !== count) throw new Error('#6c floor: the bare INSERT stored fewer rows than asked');
      return ms;
    };
    const insertOne: number[] = [];
    const insertHundred: number[] = [];
    const bareOne: number[] = [];
    const bareHundred: number[] = [];
    for (let i = 0; i < 3; i++) {
      await time(1);
      await time(100);
      await timeBare(1);
      await timeBare(100);
    }
    for (let i = 0; i < n; i++) {
      insertOne.push(await time(1));
      insertHundred.push(await time(100));
      bareOne.push(await timeBare(1));
      bareHundred.push(await timeBare(100));
    }
    return { insertOne, insertHundred, bareOne, bareHundred };
  } finally {
    await database.close();
  }
}
