/**
 * Figure 9: what capturing output costs a chatty workflow. The boot agent (dist/boot-agent.mjs,
 * warm cache) runs a workflow writing 100 MB to stdout in 64 KiB writes: captured (masked
 * with a secret given, lines shipped to a loopback stand-in for the registry up to the
 * default budget, the rest dropped and counted, the masked text copied to the agent's
 * stdout, read and discarded here as a console would). Baseline, same run: the same agent
 * and workflow writing the 100 MB to /dev/null instead. Target: ≤ 1.2×.
 *
 * Reported too (no target), the floor of any capture through a Node process, which the
 * issue requires (the runtime's output goes to the agent only; the agent writes the masked
 * text to the console): the same workflow spawned by a bare Node relay (node flags as the
 * agent's) that copies its stdout to its own, read here as the agent's is.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { listBundleEntries, packDirectory } from '../packages/sdk/src/index.js';
import { AGENT, bootShNodeFlags, runAgent, timedRun } from './boot-agent.js';
import type { BenchEnv } from './lib/env.js';
import { type FigureContext, type Row, row } from './lib/figure.js';
import { summarize } from './lib/stats.js';

const TOTAL = 100 * 1000 * 1000;
/** 64 KiB of text lines (~100 bytes each), written until TOTAL bytes. */
const PROGRAM = `const fs = require('node:fs');
const line = 'x'.repeat(99) + '\\n';
const chunk = Buffer.from(line.repeat(Math.floor(65536 / line.length)));
const fd = process.argv[1] === 'null' ? fs.openSync('/dev/null', 'w') : 1;
const t = process.hrtime.bigint();
for (let n = 0; n < ${TOTAL}; n += chunk.length) fs.writeSync(fd, chunk);
process.stderr.write('WROTE ' + Number(process.hrtime.bigint() - t) / 1e9 + '\\n');`;

/**
 * The least a capture does: spawn the workflow with its stdout piped (as run.ts does) and
 * copy each chunk to this process's stdout, waiting for the console when it is slow.
 */
const RELAY = `const child = require('node:child_process').spawn(process.argv[1], process.argv.slice(2), { stdio: ['inherit', 'pipe', 'inherit'] });
child.stdout.on('data', (chunk) => {
  if (process.stdout.write(chunk)) return;
  child.stdout.pause();
  process.stdout.once('drain', () => child.stdout.resume());
});
child.on('exit', (code) => (process.exitCode = code));`;

/** Wall seconds of `node <args>`, its stdout read and discarded as the agent's is, and its stderr. */
async function runNode(args: string[]): Promise<{ seconds: number; stderr: string }> {
  const run = await timedRun(process.execPath, args, { PATH: process.env.PATH });
  if (run.code !== 0) throw new Error(`node ${args[0]} … exited ${run.code}:\n${run.stderr}`);
  return run;
}

/**
 * The registry's agent endpoints, as small as can be: a session, and every event accepted
 * (`GET /events` tells how many). In a process of its own, as the registry is: in this one
 * its work would delay the reads of the agent's stdout (the console) and so the agent.
 */
const EVENT_SINK = `const http = require('node:http');
let events = 0;
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.url === '/events') return res.end(String(events));
    if (req.url === '/trpc/executions.exchangeToken') return res.end('{"result":{"data":{"sessionToken":"bench-session"}}}');
    if (req.url === '/trpc/executions.appendEvent') events++;
    res.end('{"result":{"data":{"accepted":true}}}');
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));`;

async function eventSink(): Promise<{ url: string; events: () => Promise<number>; close: () => void }> {
  const child = spawn(process.execPath, ['-e', EVENT_SINK], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the event sink did not start within 10 s')), 10_000);
    child.once('error', reject);
    child.stdout.once('data', (c: Buffer) => {
      clearTimeout(timer);
      resolve(c.toString().trim());
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    events: async () => Number(await (await fetch(`${url}/events`)).text()),
    close: () => child.kill(),
  };
}

export async function outputFigure(env: BenchEnv, ctx: FigureContext, runs: number): Promise<Row[]> {
  await fs.access(AGENT).catch(() => {
    throw new Error(`${AGENT} is missing: pnpm --filter @swarm/boot-agent build`);
  });
  const dir = path.join(env.workDir, 'output');
  await fs.mkdir(path.join(dir, 'src'), { recursive: true });
  await fs.writeFile(path.join(dir, 'src/swarm.json'), '{"entrypoint":["true"]}');
  const bundle = path.join(dir, 'bundle.tar.gz');
  await pipeline(packDirectory(path.join(dir, 'src'), await listBundleEntries(path.join(dir, 'src'))), createWriteStream(bundle));
  const bytes = await fs.readFile(bundle);
  const hash = createHash('sha256').update(bytes).digest('hex');
  const minio = env.minio();
  const bucket = await env.createBucket();
  await minio.fPutObject(bucket, `blobs/sha256/${hash}`, bundle);
  const url = await minio.presignedGetObject(bucket, `blobs/sha256/${hash}`, 3600);
  const sink = await eventSink();
  const nodeFlags = await bootShNodeFlags();
  const cache = path.join(dir, 'cache');
  try {
    await fs.writeFile(
      path.join(dir, 'metadata.json'),
      JSON.stringify({
        apiUrl: sink.url,
        execution: { id: '00000000-0000-4000-8000-000000000009', agentToken: 'bench-bootstrap' },
        secrets: { API_KEY: 'bench-secret-value-0123456789' },
      }),
    );
    const agent = (target: 'stdout' | 'null') =>
      runAgent(nodeFlags, ['--bundle-url', url, '--bundle-hash', hash, '--', 'node', '-e', PROGRAM, target], {
        SWARM_CACHE_DIR: cache,
        SWARM_WORKFLOW_DIR: path.join(dir, 'workflow'),
        SWARM_METADATA_FILE: path.join(dir, 'metadata.json'),
      });
    await agent('null'); // warm-up: the bundle is cached, node and the agent are in the page cache
    // The whole agent run (the figure: it also waits for the shipped events to be delivered),
    // and the workflow's own time for its writes (a note: /dev/null takes ~10 ms for 100 MB,
    // so any pipe at all is many times that).
    const wrote = (stderr: string) => {
      const m = /WROTE ([\d.]+)/.exec(stderr);
      if (!m) throw new Error(`no WROTE line from the workflow:\n${stderr.slice(-2000)}`);
      return Number(m[1]);
    };
    const base: number[] = [];
    const ours: number[] = [];
    const relay: number[] = [];
    const alone: number[] = []; // the workflow by itself, writing to /dev/null: what the relay adds is relay − alone
    const agentBase: number[] = []; // the workflow's write seconds, baseline
    const agentOurs: number[] = []; // the workflow's write seconds, ours
    const relayWrote: number[] = []; // the workflow's write seconds, through the bare relay
    for (let i = 0; i < runs; i++) {
      const b = await agent('null');
      agentBase.push(wrote(b.stderr));
      base.push(b.seconds);
      const o = await agent('stdout');
      agentOurs.push(wrote(o.stderr));
      ours.push(o.seconds);
      const r = await runNode([...nodeFlags, '-e', RELAY, 'node', '-e', PROGRAM, 'stdout']);
      relayWrote.push(wrote(r.stderr));
      relay.push(r.seconds);
      alone.push((await runNode(['-e', PROGRAM, 'null'])).seconds);
    }
    ctx.log(`  ${await sink.events()} events received in all`);
    return [
      row({
        id: '9',
        what: 'workflow writing 100 MB to stdout, captured by the boot agent (masked, shipped within the budget), agent run',
        unit: 's',
        baselineWhat: 'the same agent and workflow writing the 100 MB to /dev/null',
        baseline: summarize(base),
        ours: summarize(ours),
        target: { op: '<=', value: 1.2, on: 'ratio' },
        notes: {
          bytes: TOTAL,
          writeBytes: 65_536,
          measured: 'the boot agent run, start to exit (warm cache)',
          workflowWriteSecondsBaseline: summarize(agentBase).median,
          workflowWriteSecondsOurs: summarize(agentOurs).median,
        },
      }),
      row({
        id: '9-relay',
        what: 'the floor: the same workflow through a bare Node relay (spawn, copy stdout to stdout), relay run',
        unit: 's',
        baselineWhat: 'the boot agent and workflow writing the 100 MB to /dev/null (the row above)',
        baseline: summarize(base),
        ours: summarize(relay),
        notes: {
          measured: 'the relay process, start to exit: no agent start, no bundle, no masking, no events',
          workflowWriteSecondsRelay: summarize(relayWrote).median,
          workflowAloneSeconds: summarize(alone).median,
          // The agent can at best add what the relay adds to the workflow run alone.
          floorRatio: (summarize(base).median + summarize(relay).median - summarize(alone).median) / summarize(base).median,
        },
      }),
    ];
  } finally {
    sink.close();
  }
}
