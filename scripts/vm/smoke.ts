/**
 * End-to-end smoke test of the qemu driver, for real: builds (or reuses) the VM image,
 * serves a small bundle from 127.0.0.1, serves its metadata over MMDS V2, boots the VM
 * and checks the workflow ran with exit code 0. Then boots twice more with a cache drive:
 * the first fills it (cache miss, download), the second must run from it ("cache hit")
 * without touching the bundle server.
 *
 *   node --import tsx scripts/vm/smoke.ts [--image-dir .swarm/vm] [--skip-build]
 *        [--forward-mode exec|chardev] [--accel tcg|kvm|auto] [--verbose]
 *
 * Network: every server here listens on 127.0.0.1; the VM (restrict=on) reaches them only
 * through its guestfwd forwards. The workflow also checks that an address that is NOT
 * forwarded (the slirp host address 169.254.169.2, i.e. this machine's loopback) is
 * unreachable from the guest.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import {
  bootQemuVm,
  createCacheDrive,
  type ForwardMode,
  type QemuAccel,
  type QemuVmResult,
} from '../../packages/sdk/src/orchestrator/index.js';
import { startMetadataService } from '../../packages/sdk/src/orchestrator/mmds.js';
import { listBundleEntries, packDirectory } from '../../packages/sdk/src/pack.js';
import { AGENT_LOG_PREFIX, AGENT_START_MARKER, EXIT_MARKER, INIT_MARKER } from '../../packages/sdk/src/vm-console.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const { values: args } = parseArgs({
  options: {
    'image-dir': { type: 'string', default: path.join(ROOT, '.swarm/vm') },
    'skip-build': { type: 'boolean', default: false },
    'forward-mode': { type: 'string', default: 'exec' },
    accel: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
const RUNTIME_LINE = 'SMOKE: hello from the workflow';
const OVERALL_LIMIT_MS = 15 * 60_000;
const guard = setTimeout(() => {
  console.error(`smoke: gave up after ${OVERALL_LIMIT_MS / 60_000} min`);
  process.exit(2);
}, OVERALL_LIMIT_MS);
guard.unref();

/** A console line starts with `text` (not merely contains it, e.g. in an error's source excerpt). */
const printed = (consoleText: string, text: string) => consoleText.split(/\r?\n/).some((l) => l.startsWith(text));
const say = (msg: string) => console.log(`smoke: ${msg}`);
const failures: string[] = [];
const check = (ok: boolean, what: string) => {
  say(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

function runBuild(imageDir: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('bash', [path.join(ROOT, 'scripts/vm/build-image.sh'), imageDir], {
      stdio: 'inherit',
      timeout: 20 * 60_000,
      killSignal: 'SIGKILL',
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve(performance.now() - started) : reject(new Error(`build-image.sh failed with ${code}`)),
    );
  });
}

async function makeBundle(dir: string): Promise<{ file: string; hash: string; size: number }> {
  const src = path.join(dir, 'bundle');
  await fs.mkdir(src);
  await fs.writeFile(path.join(src, 'swarm.json'), JSON.stringify({ entrypoint: ['node', 'index.js'] }));
  // The workflow: print the line, show the secret arrived, exercise the forward with
  // several connections (sequential and concurrent), and try an address that is not forwarded.
  await fs.writeFile(
    path.join(src, 'index.js'),
    `const http = require('node:http');
const net = require('node:net');
console.log(${JSON.stringify(RUNTIME_LINE)} + ' (greeting=' + process.env.GREETING + ', node ' + process.version + ')');
const get = (url) => new Promise((resolve) => {
  const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
    let body = ''; res.on('data', (d) => (body += d)); res.on('end', () => resolve(res.statusCode + ' ' + body));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (err) => resolve('error ' + err.message));
});
const connect = (host, port) => new Promise((resolve) => {
  const s = net.connect({ host, port, timeout: 2000 });
  s.once('connect', () => { s.destroy(); resolve('connected'); });
  s.once('timeout', () => { s.destroy(); resolve('timeout'); });
  s.once('error', (err) => resolve(err.code || err.message));
});
(async () => {
  const seq = [];
  for (let i = 0; i < 3; i++) seq.push(await get(process.env.PING_URL + '?n=' + i));
  console.log('SMOKE: sequential ' + JSON.stringify(seq));
  const par = await Promise.all([0, 1, 2].map((i) => get(process.env.PING_URL + '?p=' + i)));
  console.log('SMOKE: concurrent ' + JSON.stringify(par));
  console.log('SMOKE: unforwarded ' + await connect('169.254.169.2', Number(process.env.HOST_PORT)));
})();
`,
  );
  const file = path.join(dir, 'b.tgz');
  await pipeline(packDirectory(src, await listBundleEntries(src)), createWriteStream(file));
  const bytes = await fs.readFile(file);
  return { file, hash: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
}

async function main(): Promise<void> {
  const imageDir = path.resolve(args['image-dir']);
  const forwardMode = args['forward-mode'] as ForwardMode;
  let buildMs: number | undefined;
  if (!args['skip-build']) {
    say(`building the image in ${imageDir} (fast when up to date)`);
    buildMs = await runBuild(imageDir);
  }
  const kernelBytes = (await fs.stat(path.join(imageDir, 'vmlinuz'))).size;
  const initrdBytes = (await fs.stat(path.join(imageDir, 'initramfs.cpio'))).size;

  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-vm-smoke-'));
  const requests: string[] = [];
  const bundle = await makeBundle(work);
  const server = http.createServer(async (req, res) => {
    requests.push(req.url ?? '');
    if (req.url === '/b.tgz') {
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': bundle.size });
      res.end(await fs.readFile(bundle.file));
    } else if (req.url?.startsWith('/ping')) {
      res.end(`pong ${req.url.slice(5)}`);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const guestHost = '169.254.169.20';
  const mmds = await startMetadataService({
    bundle: { url: `http://${guestHost}:${port}/b.tgz`, hash: bundle.hash, size: bundle.size },
    secrets: { GREETING: 'hello-secret', PING_URL: `http://${guestHost}:${port}/ping`, HOST_PORT: String(port) },
  });
  say(
    `bundle ${bundle.hash.slice(0, 12)} (${bundle.size} bytes) on 127.0.0.1:${port} as ${guestHost}:${port}; MMDS on 127.0.0.1:${mmds.port}`,
  );

  const boot = async (label: string, cacheDrive?: string) => {
    let runtimeOutputMs: number | undefined;
    const started = performance.now();
    say(`boot ${label}: starting (forward mode ${forwardMode})`);
    const result: QemuVmResult = await bootQemuVm({
      imageDir,
      metadataPort: mmds.port,
      forwards: [{ guestAddress: guestHost, guestPort: port, hostPort: port }],
      forwardMode,
      cacheDrive,
      accel: args.accel as QemuAccel | undefined,
      timeoutMs: 240_000,
      onLine: (line) => {
        if (line.startsWith(RUNTIME_LINE)) runtimeOutputMs ??= Math.round(performance.now() - started);
        if (
          args.verbose ||
          ['SMOKE', INIT_MARKER, AGENT_START_MARKER, EXIT_MARKER, AGENT_LOG_PREFIX, 'init:'].some((p) => line.startsWith(p))
        ) {
          console.log(`  [vm ${label} +${((performance.now() - started) / 1000).toFixed(2)}s] ${line}`);
        }
      },
    });
    return { ...result, runtimeOutputMs };
  };

  try {
    const r1 = await boot('1 (no cache drive)');
    check(r1.exitCode === 0, `boot 1 exit code 0 (got ${r1.exitCode})`);
    check(printed(r1.console, `${RUNTIME_LINE} (greeting=hello-secret`), 'boot 1: the workflow printed its line, with the secret');
    check(r1.console.includes(`${AGENT_LOG_PREFIX}fetched and verified`), 'boot 1: the bundle was fetched and verified');
    check(
      /SMOKE: sequential \["200 pong \?n=0","200 pong \?n=1","200 pong \?n=2"\]/.test(r1.console),
      'boot 1: three sequential connections through the forward',
    );
    check(
      /SMOKE: concurrent \["200 pong \?p=0","200 pong \?p=1","200 pong \?p=2"\]/.test(r1.console),
      'boot 1: three concurrent connections through the forward',
    );
    check(
      /SMOKE: unforwarded (timeout|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH)/.test(r1.console),
      'boot 1: an address that is not forwarded is unreachable',
    );

    const drive = path.join(work, 'cache.img');
    await createCacheDrive(drive, 64);
    const fetchesBefore = requests.filter((u) => u === '/b.tgz').length;
    const r2 = await boot('2 (fresh cache drive)', drive);
    check(r2.exitCode === 0 && /fetched and verified/.test(r2.console), 'boot 2: exit 0, bundle fetched into the cache drive');
    check(/init: cache drive mounted/.test(r2.console), 'boot 2: cache drive mounted');
    const fetchesMid = requests.filter((u) => u === '/b.tgz').length;
    const r3 = await boot('3 (same cache drive)', drive);
    const fetchesAfter = requests.filter((u) => u === '/b.tgz').length;
    check(r3.exitCode === 0, `boot 3 exit code 0 (got ${r3.exitCode})`);
    check(r3.console.includes(`${AGENT_LOG_PREFIX}cache hit`), 'boot 3: "cache hit"');
    check(printed(r3.console, RUNTIME_LINE), 'boot 3: the workflow printed its line');
    check(
      fetchesMid === fetchesBefore + 1 && fetchesAfter === fetchesMid,
      `boot 3: no download (bundle GETs: ${fetchesBefore} → ${fetchesMid} → ${fetchesAfter})`,
    );

    const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
    const s = (ms?: number) => (ms === undefined ? '–' : `${(ms / 1000).toFixed(2)} s`);
    console.log('\nmeasurements (accel %s, %d CPU(s) on the host):', r1.accel, os.cpus().length);
    if (buildMs !== undefined) console.log(`  build-image.sh this run:   ${s(buildMs)}`);
    console.log(`  image: kernel ${mib(kernelBytes)} + initramfs ${mib(initrdBytes)} = ${mib(kernelBytes + initrdBytes)}`);
    for (const [label, r] of [
      ['boot 1 (no drive)', r1],
      ['boot 2 (cache miss)', r2],
      ['boot 3 (cache hit)', r3],
    ] as const) {
      const t = r.timings;
      console.log(
        `  ${label.padEnd(20)} total ${s(r.durationMs)} | to /init ${s(t.bootToInitMs)} (guest uptime ${s(t.guestUptimeAtInitMs)}) | to agent ${s(t.agentStartMs)}` +
          ` | to runtime output ${s(r.runtimeOutputMs)} | to exit code ${s(t.exitMarkerMs)} | power-off ${s(t.shutdownMs)}`,
      );
    }
  } finally {
    await mmds.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(work, { recursive: true, force: true });
  }
  if (failures.length) {
    console.error(`\nsmoke: ${failures.length} check(s) failed:\n  ${failures.join('\n  ')}`);
    process.exitCode = 1;
  } else {
    say('all checks passed');
  }
}

main().catch((err: unknown) => {
  console.error('smoke: failed:', err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
