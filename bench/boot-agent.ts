/**
 * Figures 4 and 5: the boot agent (the esbuild bundle a VM runs, dist/boot-agent.mjs, as a
 * plain process) fetching, verifying and unpacking a ~50 MiB bundle of 5,000 files from a
 * presigned S3 URL, cold (empty cache) and warm (bundle and its unpacked tree in the cache,
 * as the cold boot left them). Baseline: curl piped
 * through sha256sum into tar in bash. Floors measured alone in the same run: the download
 * with curl to /dev/null, sha256 of the file, gunzip of it (Node's zlib, one core),
 * GNU tar writing the already gunzip'd tar's 5,000 files (the file system's share), and
 * the agent's design at its floor: bench/bare-unpack.mjs, one Node process doing only
 * fetch + sha256 + gunzip + untar with the agent's libraries and threads, run as the agent
 * is (and with node-tar's inline gunzip, the agent's design until 2026-11-30); and the same
 * keeping what the warm boot (#5) needs, the archive and a hard-linked tree.
 */
import { execFile, spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { listBundleEntries, packDirectory } from '../packages/sdk/src/index.js';
import { CHECK_ONLY, DEFAULT_BUNDLE_LIMITS, walkArchive } from '../packages/sdk/src/bundle-rules/index.js';
import { type BenchEnv, root } from './lib/env.js';
import { type FigureContext, type Row, row } from './lib/figure.js';
import { MiB, summarize } from './lib/stats.js';

const FILES = 5000;
/** Base64 text of random bytes: compresses about as well as minified JavaScript (~3:4). */
const FILE_BYTES = 14 * 1024;
export const AGENT = path.join(root, 'packages/boot-agent/dist/boot-agent.mjs');
const BARE_UNPACK = path.join(root, 'bench/bare-unpack.mjs');

/** The node flags boot.sh gives the agent in the VM (its SWARM_NODE_FLAGS default, as it prints them), so the agent is measured as it runs there. */
export async function bootShNodeFlags(): Promise<string[]> {
  const env = { PATH: process.env.PATH, SWARM_BOOT_PRINT: 'flags' };
  const { stdout } = await promisify(execFile)('sh', [path.join(root, 'packages/boot-agent/boot.sh')], { env });
  return stdout.split(/\s+/).filter(Boolean);
}

export async function makeBundle(dir: string): Promise<string> {
  const src = path.join(dir, 'src');
  for (let d = 0; d < FILES / 100; d++) {
    await fs.mkdir(path.join(src, `pkg-${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) {
      const text = randomBytes((FILE_BYTES * 3) / 4).toString('base64');
      await fs.writeFile(path.join(src, `pkg-${d}`, `file-${f}.js`), text);
    }
  }
  await fs.writeFile(path.join(src, 'swarm.json'), '{"entrypoint":["true"]}');
  const file = path.join(dir, 'bundle.tar.gz');
  await pipeline(packDirectory(src, await listBundleEntries(src)), createWriteStream(file));
  await fs.rm(src, { recursive: true });
  return file;
}

const timed = async (f: () => Promise<unknown>) => {
  const t = performance.now();
  await f();
  return (performance.now() - t) / 1000;
};

function sh(script: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('bash', ['-c', script], { env: { PATH: process.env.PATH, ...env }, timeout: 120_000 }, (err, _o, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(),
    ),
  );
}

/**
 * Runs `command` to its exit (killed after two minutes): wall seconds measured here, the
 * tail of its stderr; its stdout is read and discarded, as a console would.
 */
export function timedRun(
  command: string,
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ seconds: number; code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const t = performance.now();
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.resume();
    child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-8000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ seconds: (performance.now() - t) / 1000, code, stderr });
    });
  });
}

/** Runs the agent (or `script`, run as the agent is) under /usr/bin/time; wall seconds (measured here) and peak RSS (bytes). */
export async function runAgent(
  nodeFlags: string[],
  args: string[],
  env: Record<string, string>,
  script = AGENT,
): Promise<{ seconds: number; maxRss: number; stderr: string }> {
  const run = await timedRun('/usr/bin/time', ['-f', 'MAXRSS %M', process.execPath, ...nodeFlags, script, ...args], {
    // As root the agent runs the workflow as SWARM_RUNTIME_USER (the image's `swarm`); this
    // machine has `nobody`, as the tests use.
    PATH: process.env.PATH,
    SWARM_MMDS_URL: 'off',
    ...(process.getuid?.() === 0 ? { SWARM_RUNTIME_USER: 'nobody' } : {}),
    ...env,
  });
  const m = /MAXRSS (\d+)/.exec(run.stderr);
  if (run.code !== 0 || !m) throw new Error(`boot agent exited ${run.code}:\n${run.stderr}`);
  return { seconds: run.seconds, maxRss: Number(m[1]) * 1024, stderr: run.stderr };
}

export async function bootAgentFigures(env: BenchEnv, ctx: FigureContext, only: (id: string) => boolean): Promise<Row[]> {
  await fs.access(AGENT).catch(() => {
    throw new Error(`${AGENT} is missing: pnpm --filter @swarm/boot-agent build`);
  });
  const dir = path.join(env.workDir, 'agent');
  await fs.mkdir(dir, { recursive: true });
  const bundle = await makeBundle(dir);
  const size = (await fs.stat(bundle)).size;
  const hash = createHash('sha256')
    .update(await fs.readFile(bundle))
    .digest('hex');
  const minio = env.minio();
  const bucket = await env.createBucket();
  await minio.fPutObject(bucket, `blobs/sha256/${hash}`, bundle);
  const url = await minio.presignedGetObject(bucket, `blobs/sha256/${hash}`, 3600);
  ctx.log(`  bundle: ${FILES} files, ${(size / MiB).toFixed(1)} MiB gzip'd`);

  const fresh = async (name: string) => {
    const d = path.join(dir, name);
    await fs.rm(d, { recursive: true, force: true });
    await fs.mkdir(d, { recursive: true });
    return d;
  };
  const nodeFlags = await bootShNodeFlags();
  // The registry's tree digest, as the spawn's metadata carries it: the warm boot checks its cached tree against it.
  const { treeDigest } = await walkArchive(createReadStream(bundle), DEFAULT_BUNDLE_LIMITS, CHECK_ONLY, { treeDigest: true });
  const agentArgs = ['--bundle-url', url, '--bundle-hash', hash, '--bundle-size', String(size), '--bundle-tree-digest', treeDigest!];
  agentArgs.push('--', 'true');
  const base: number[] = [];
  const cold: number[] = [];
  const coldRss: number[] = [];
  const warm: number[] = [];
  const warmRss: number[] = [];
  let warmFromTree = 0;
  const floors = {
    download: [] as number[],
    sha256: [] as number[],
    gunzip: [] as number[],
    untar: [] as number[],
    bareNode: [] as number[],
    bareNodeRssMiB: [] as number[],
    bareNodeKeeping: [] as number[],
    bareNodeInlineGunzip: [] as number[],
    bareNodeKeepingInlineGunzip: [] as number[],
  };
  const plainTar = path.join(dir, 'bundle.tar');
  await sh('gzip -dc "$B" > "$T"', { B: bundle, T: plainTar });
  // Warm-up: the page cache holds node, the agent and the store's object for everyone alike.
  await sh('curl -sf "$URL" > /dev/null', { URL: url });
  // Before each timed step: the previous step's files are written back to disk, so no
  // step pays for another's writeback (the warm run follows the cold one's 68 MiB).
  const settle = () => sh('sync', {});
  for (let i = 0; i < ctx.runs; i++) {
    const out = await fresh('baseline');
    await settle();
    base.push(
      await timed(() =>
        sh('set -o pipefail; curl -sf "$URL" | tee >(sha256sum > "$OUT/../sum") | tar -xz -C "$OUT"', { URL: url, OUT: out }),
      ),
    );
    const cache = await fresh('cache');
    const wfCold = path.join(await fresh('wf-cold'), 'workflow');
    await settle();
    const c = await runAgent(nodeFlags, agentArgs, { SWARM_CACHE_DIR: cache, SWARM_WORKFLOW_DIR: wfCold });
    cold.push(c.seconds);
    coldRss.push(c.maxRss / MiB);
    const wf = path.join(await fresh('wf'), 'workflow');
    await settle();
    const w = await runAgent(nodeFlags, agentArgs, { SWARM_CACHE_DIR: cache, SWARM_WORKFLOW_DIR: wf });
    // A warm boot uses the cache's unpacked tree when it checks out against the tree digest (the cold boot kept it).
    if (w.stderr.includes('checked against its tree digest')) warmFromTree++;
    warm.push(w.seconds);
    warmRss.push(w.maxRss / MiB);
    floors.download.push(await timed(() => sh('curl -sf "$URL" > /dev/null', { URL: url })));
    floors.sha256.push(await timed(() => pipeline(createReadStream(bundle, { highWaterMark: MiB }), createHash('sha256'))));
    floors.gunzip.push(
      await timed(() =>
        pipeline(
          createReadStream(bundle, { highWaterMark: MiB }),
          createGunzip({ chunkSize: 256 * 1024 }),
          new Writable({ write: (_c, _e, cb) => cb() }),
        ),
      ),
    );
    const untarDir = await fresh('untar');
    await settle();
    floors.untar.push(await timed(() => sh('tar -xf "$T" -C "$D"', { T: plainTar, D: untarDir })));
    // The four bare floors in a rotating order, so a drift of the machine does not always
    // land on the same one; each, like every step, starts after its directories' writeback.
    const bareFloors = [
      async () => {
        const out = await fresh('bare');
        await settle();
        const bare = await runAgent(nodeFlags, [url, hash, out], {}, BARE_UNPACK);
        floors.bareNode.push(bare.seconds);
        floors.bareNodeRssMiB.push(bare.maxRss / MiB);
      },
      async () => {
        const [out, keep] = [await fresh('bare-keep-out'), await fresh('bare-keep')];
        await settle();
        floors.bareNodeKeeping.push((await runAgent(nodeFlags, [url, hash, out, '--keep', keep], {}, BARE_UNPACK)).seconds);
      },
      async () => {
        const out = await fresh('bare-inline');
        await settle();
        floors.bareNodeInlineGunzip.push((await runAgent(nodeFlags, [url, hash, out, '--inline-gunzip'], {}, BARE_UNPACK)).seconds);
      },
      async () => {
        const [out, keep] = [await fresh('bare-keep-inline-out'), await fresh('bare-keep-inline')];
        await settle();
        const args = [url, hash, out, '--keep', keep, '--inline-gunzip'];
        floors.bareNodeKeepingInlineGunzip.push((await runAgent(nodeFlags, args, {}, BARE_UNPACK)).seconds);
      },
    ];
    for (let k = 0; k < bareFloors.length; k++) await bareFloors[(i + k) % bareFloors.length]!();
    ctx.log(
      `  #4/#5 run ${i + 1}: shell ${base.at(-1)!.toFixed(2)} s, bare node ${floors.bareNode.at(-1)!.toFixed(2)} s (${floors.bareNodeRssMiB.at(-1)!.toFixed(0)} MiB; inline gunzip ${floors.bareNodeInlineGunzip.at(-1)!.toFixed(2)} s), keeping the archive and tree ${floors.bareNodeKeeping.at(-1)!.toFixed(2)} s (inline gunzip ${floors.bareNodeKeepingInlineGunzip.at(-1)!.toFixed(2)} s), agent cold ${c.seconds.toFixed(2)} s (${(c.maxRss / MiB).toFixed(0)} MiB), warm ${w.seconds.toFixed(2)} s (${(w.maxRss / MiB).toFixed(0)} MiB, from the ${w.stderr.includes('unpacked tree') ? 'tree' : 'archive'})`,
    );
  }
  const coldS = summarize(cold);
  const notes = {
    bundleBytes: size,
    files: FILES,
    nodeFlags,
    floorsSeconds: {
      download: summarize(floors.download).median,
      sha256: summarize(floors.sha256).median,
      gunzip: summarize(floors.gunzip).median,
      untar: summarize(floors.untar).median,
      bareNode: summarize(floors.bareNode).median,
      bareNodeKeeping: summarize(floors.bareNodeKeeping).median,
      bareNodeInlineGunzip: summarize(floors.bareNodeInlineGunzip).median,
      bareNodeKeepingInlineGunzip: summarize(floors.bareNodeKeepingInlineGunzip).median,
    },
    bareNodePeakRssMiB: summarize(floors.bareNodeRssMiB).median,
  };
  const rows: Row[] = [];
  if (only('4')) {
    rows.push(
      row({
        id: '4a',
        what: 'boot agent cold: fetch + verify + unpack, time',
        unit: 's',
        baselineWhat: 'curl | tee >(sha256sum) | tar -xz in bash',
        baseline: summarize(base),
        ours: coldS,
        target: { on: 'ratio', op: '<=', value: 0.85 },
        notes,
      }),
    );
    rows.push(
      row({
        id: '4b',
        what: 'boot agent cold: peak RSS',
        unit: 'MiB',
        ours: summarize(coldRss),
        target: { on: 'value', op: '<=', value: 64 },
      }),
    );
  }
  if (only('5')) {
    rows.push(
      row({
        id: '5',
        what: 'boot agent warm (bundle and its tree in cache, tree digest in the metadata), time',
        unit: 's',
        baselineWhat: 'the agent cold (#4)',
        baseline: coldS,
        ours: summarize(warm),
        target: { on: 'ratio', op: '<=', value: 0.35 },
        notes: { peakRssMiB: summarize(warmRss).median, warmRunsFromTree: warmFromTree },
      }),
    );
  }
  return rows;
}
