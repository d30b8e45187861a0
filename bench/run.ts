/**
 * `pnpm bench [--check] [--only 1,3,vm] [--skip vm] [--runs N] [--duration S]`
 *
 * Starts PostgreSQL and the S3 server (the tests' helpers), runs each figure against a
 * baseline measured in the same run, prints a table and writes bench/results.json (a
 * partial run, with --only or --skip, writes bench/out/results.json instead). With
 * --check, exits 1 when a figure misses its target. Benchmarks, not tests: nothing here
 * runs in .ci/run. See bench/README.md.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { bootAgentFigures } from './boot-agent.js';
import { type BenchEnv, root, startBenchEnv } from './lib/env.js';
import type { FigureContext, Row } from './lib/figure.js';
import { resolveFigures } from './resolve.js';
import { outputFigure } from './output.js';
import { signingFigure } from './signing.js';
import { uploadFigure } from './upload.js';
import { vmFigure } from './vm.js';

const ALL = ['1', '2', '2b', '2c', '3', '4', '5', '6', '6b', '6c', '7', '7b', '7c', '8', '9'];
const GROUPS: Record<string, string[]> = {
  resolve: ['1', '2', '2b', '2c', '6', '6b', '6c'],
  upload: ['3'],
  agent: ['4', '5'],
  vm: ['7', '7b', '7c'],
  signing: ['8'],
  output: ['9'],
};
const usage =
  'usage: pnpm bench [--check] [--only 1,2,…|resolve,upload,agent,vm,signing,output] [--skip …] [--runs N] [--duration SECONDS]';

const { values } = parseArgs({
  options: {
    check: { type: 'boolean', default: false },
    only: { type: 'string' },
    skip: { type: 'string' },
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const figuresOf = (list: string | undefined) =>
  (list ?? '')
    .split(',')
    .filter(Boolean)
    .flatMap((x) => {
      const ids = GROUPS[x] ?? (ALL.includes(x) ? [x] : undefined);
      if (!ids) {
        console.error(`unknown figure "${x}"; ${usage}`);
        process.exit(64);
      }
      return ids;
    });
const selected = new Set(values.only ? figuresOf(values.only) : ALL);
for (const id of figuresOf(values.skip)) selected.delete(id);
const only = (id: string) => selected.has(id);
const runs = Number(values.runs);
const duration = Number(values.duration);
if (!Number.isInteger(runs) || runs < 1 || runs > 20 || !Number.isInteger(duration) || duration < 1 || duration > 120) {
  console.error(`--runs must be 1–20 and --duration 1–120 seconds; ${usage}`);
  process.exit(64);
}
const ctx: FigureContext = { log: (l) => console.error(l), runs, duration };

const startedAt = new Date();
const loadBefore = os.loadavg();
const rows: Row[] = [];
const failures: string[] = [];
let env: BenchEnv | undefined;
try {
  ctx.log('starting PostgreSQL and the S3 server…');
  env = await startBenchEnv();
  const step = async (name: string, ids: string[], f: () => Promise<Row[]>) => {
    if (!ids.some(only)) return;
    ctx.log(`${name}…`);
    const t = performance.now();
    try {
      rows.push(...(await f()));
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
      ctx.log(`  FAILED: ${(err as Error).stack}`);
    }
    ctx.log(`  (${((performance.now() - t) / 1000).toFixed(0)} s)`);
  };
  await step('#1, #2, #2b, #2c, #6, #6b, #6c resolve and spawn', GROUPS.resolve!, () => resolveFigures(env!, ctx, only));
  await step('#3 upload', GROUPS.upload!, () => uploadFigure(env!, ctx, Math.min(runs, 3)));
  await step('#4, #5 boot agent', GROUPS.agent!, async () => {
    await promisify(execFile)('pnpm', ['--filter', '@swarm/boot-agent', 'build'], { cwd: root, timeout: 120_000 });
    return bootAgentFigures(env!, ctx, only);
  });
  await step('#7, #7b, #7c VM', GROUPS.vm!, () => vmFigure(env!, ctx, Math.min(runs, 3)));
  await step('#8 signature verification', GROUPS.signing!, () => signingFigure(ctx));
  await step('#9 output capture', GROUPS.output!, async () => {
    await promisify(execFile)('pnpm', ['--filter', '@swarm/boot-agent', 'build'], { cwd: root, timeout: 120_000 });
    return outputFigure(env!, ctx, Math.min(runs, 3));
  });
} finally {
  await env?.stop();
}

const fmt = (n: number | undefined, digits = 2) =>
  n === undefined ? '' : Number.isNaN(n) ? 'NaN' : n >= 100 ? n.toFixed(0) : n.toFixed(digits);
const table = [
  ['#', 'what', 'baseline (median)', 'ours (median, min–max)', 'ratio', 'target', 'met'],
  ...rows.map((r) => [
    r.id,
    r.what,
    r.baseline ? `${fmt(r.baseline.median)} ${r.unit}` : '',
    `${fmt(r.ours.median)} ${r.unit} (${fmt(r.ours.min)}–${fmt(r.ours.max)}, n=${r.ours.runs})`,
    r.ratio === undefined ? '' : `${fmt(r.ratio)}×`,
    r.target ? `${r.target.on === 'ratio' ? 'ratio' : 'value'} ${r.target.op} ${r.target.value}` : 'report only',
    r.met === undefined ? '' : r.met ? 'yes' : 'NO',
  ]),
];
const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
console.log(table.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n'));
for (const f of failures) console.log(`FAILED ${f}`);

const full = selected.size === ALL.length;
const out = path.join(root, full ? 'bench/results.json' : 'bench/out/results.json');
await fs.mkdir(path.dirname(out), { recursive: true });
const cpus = os.cpus();
await fs.writeFile(
  out,
  `${JSON.stringify(
    {
      startedAt: startedAt.toISOString(),
      seconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
      machine: {
        cpu: cpus[0]?.model,
        cores: cpus.length,
        memoryMiB: Math.round(os.totalmem() / 1024 ** 2),
        kernel: os.release(),
        node: process.version,
        loadavgBefore: loadBefore,
        loadavgAfter: os.loadavg(),
      },
      settings: { runs, durationSeconds: duration, figures: [...selected] },
      figures: rows,
      failures,
    },
    null,
    2,
  )}\n`,
);
console.log(`\nwrote ${path.relative(root, out)}`);

const missed = rows.filter((r) => r.met === false);
if (values.check && (missed.length > 0 || failures.length > 0)) {
  console.error(
    `--check: ${missed.length} figure(s) missed their target${failures.length ? `, ${failures.length} failed to run` : ''}: ${missed.map((r) => r.id).join(', ')}`,
  );
  process.exit(1);
}
process.exit(failures.length > 0 ? 1 : 0);
