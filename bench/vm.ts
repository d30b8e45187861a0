/**
 * Figures 7, 7b and 7c: a real qemu VM (TCG here: nested KVM hangs), against **the floor**
 * measured in the same run: the same kernel, qemu binary and flags as the driver
 * (bootQemuVm: machine, memory, CPUs, the network device), no drives, booting a
 * busybox-only initramfs whose /init prints a marker and powers off; qemu start to exit.
 * - #7: VM spawn → runtime_started (registry clock), a small `node` bundle, a fresh cache drive (cold).
 * - #7b: the same spawned again with the same cache drive (warm: the cached tree, checked
 *   against the tree digest).
 * - #7c: the user's whole `pnpm swarm spawn … --driver qemu --wait` as the README documents
 *   it, wall time from process start to exit (CLI start-up included), warm cache drive.
 * - 7-node, 7-least and 7c-least (report only): where the floors of #7b, #7 and #7c are:
 *   node's own start after the image's first stage, and estimates of the least any Node
 *   agent must do (bench/least-agent.cjs), alone and with the CLI's start.
 * The image is scripts/vm/build-image.sh's (.swarm/vm), rebuilt only when its inputs
 * changed, as test/vm.test.ts does.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { createSwarmClient, listBundleEntries, packDirectory } from '../packages/sdk/src/index.js';
import {
  bootQemuVm,
  createCacheDrive,
  spawnWorkflow,
  startMetadataService,
  vmEndpoints,
  withExpectedWorkflow,
} from '../packages/sdk/src/orchestrator/index.js';
import { freeLoopbackPort } from '../packages/server/src/db/embedded.js';
import { bootShNodeFlags } from './boot-agent.js';
import { type BenchEnv, root } from './lib/env.js';
import { type FigureContext, type Row, row } from './lib/figure.js';
import { summarize } from './lib/stats.js';

const imageDir = path.join(root, '.swarm/vm');

const sh = (script: string, env: Record<string, string>) =>
  promisify(execFile)('bash', ['-c', `set -o pipefail; ${script}`], { env: { ...process.env, ...env } });

/** Writes `init` (lines) into the root file system `rfs` and packs it as `out` (newc cpio, root-owned). */
async function packInitramfs(rfs: string, init: string[], out: string): Promise<string> {
  await fs.writeFile(path.join(rfs, 'init'), [...init, ''].join('\n'), { mode: 0o755 });
  await sh('cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio --create --format=newc --owner=0:0 --quiet > "$O"', { R: rfs, O: out });
  return out;
}

/**
 * The floor's initramfs: busybox and an /init that mounts /dev and /proc, prints the
 * marker the driver reads (SWARM_INIT), reports exit code 0 on the exit channel and powers off.
 */
async function floorInitramfs(dir: string): Promise<string> {
  const rfs = path.join(dir, 'floor-rootfs');
  await fs.rm(rfs, { recursive: true, force: true });
  for (const d of ['bin', 'dev', 'proc']) await fs.mkdir(path.join(rfs, d), { recursive: true });
  await fs.copyFile('/bin/busybox', path.join(rfs, 'bin/busybox'));
  await fs.chmod(path.join(rfs, 'bin/busybox'), 0o755);
  await sh('mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true', { R: rfs });
  return packInitramfs(
    rfs,
    [
      '#!/bin/busybox sh',
      '/bin/busybox mount -t devtmpfs devtmpfs /dev',
      '/bin/busybox mount -t proc proc /proc',
      'echo "SWARM_INIT uptime=$(/bin/busybox cut -d" " -f1 /proc/uptime)" > /dev/console',
      'echo SWARM_EXIT=0 > /dev/ttyS1',
      '/bin/busybox poweroff -f',
    ],
    path.join(dir, 'floor.cpio'),
  );
}

/** The image's first stage (its initramfs) unpacked into `dir/name`, to be changed and packed again. */
async function unpackFirstStage(dir: string, name: string): Promise<string> {
  const rfs = path.join(dir, name);
  await fs.rm(rfs, { recursive: true, force: true });
  await fs.mkdir(rfs, { recursive: true });
  await sh('cd "$R" && cpio --extract --make-directories --no-absolute-filenames --quiet < "$I"', {
    R: rfs,
    I: path.join(imageDir, 'initramfs.cpio'),
  });
  return rfs;
}

/**
 * The floor of a Node agent ("7-node", report only): the image's own first stage (its
 * initramfs, the root drive mounted read-only as a boot does) and then, instead of the
 * second stage, `node -e 0` from the root drive, and power off. No /init work, no network,
 * no cache drive, no agent: what any boot that runs the agent on Node pays before the
 * agent's first line.
 */
async function nodeFloorInitramfs(dir: string): Promise<string> {
  const rfs = await unpackFirstStage(dir, 'node-floor-rootfs');
  return packInitramfs(
    rfs,
    [
      '#!/bin/busybox sh',
      'B=/bin/busybox',
      '$B mount -t devtmpfs devtmpfs /dev',
      'exec </dev/console >/dev/console 2>&1',
      '$B mount -t proc proc /proc',
      'for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do',
      '  [ -f "/lib/modules/$m.ko" ] && $B insmod "/lib/modules/$m.ko"',
      'done',
      'i=0',
      'while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do $B sleep 0.05; i=$((i + 1)); done',
      '$B mount -t ext4 -o ro,noatime /dev/vda /newroot',
      '$B mount --bind /dev /newroot/dev',
      '$B mount -t proc proc /newroot/proc',
      'echo "SWARM_INIT uptime=$($B cut -d" " -f1 /proc/uptime)"',
      '$B chroot /newroot /usr/bin/node -e 0',
      'echo "SWARM_EXIT=$?" > /dev/ttyS1',
      '$B poweroff -f',
    ],
    path.join(dir, 'node-floor.cpio'),
  );
}

/**
 * The least Node agent (rows 7-least and 7c-least, report only): the image's own boot, both
 * stages of its /init (root drive, network, cache drive) as a spawn has them, and then, in
 * place of boot.sh and the agent, bench/least-agent.cjs: only what any Node agent must do
 * under the registry's protocol. On plain node, or with boot.sh's node flags when booted
 * with the setting `least_eager=1`. The first stage binds the script over
 * /opt/swarm/boot.sh; the root drive is unchanged.
 */
async function leastAgentInitramfs(dir: string, nodeFlags: string[]): Promise<string> {
  const rfs = await unpackFirstStage(dir, 'least-rootfs');
  await fs.copyFile(path.join(root, 'bench/least-agent.cjs'), path.join(rfs, 'least-agent.cjs'));
  const script = '/run/least/least-agent.cjs';
  const boot = [
    '#!/bin/sh',
    `[ "\${SWARM_LEAST_EAGER:-}" = 1 ] && exec /usr/bin/node ${nodeFlags.join(' ')} ${script}`,
    `exec /usr/bin/node ${script}`,
    '',
  ];
  await fs.writeFile(path.join(rfs, 'least-boot.sh'), boot.join('\n'), { mode: 0o755 });
  const init = (await fs.readFile(path.join(rfs, 'init'), 'utf8')).trimEnd().split('\n');
  const at = init.findIndex((l) => l.startsWith('exec $B switch_root'));
  if (at < 0) throw new Error("the image's first stage has no switch_root line: update leastAgentInitramfs");
  init.splice(
    at,
    0,
    '$B mkdir -p /newroot/run/least',
    '$B cp /least-agent.cjs /least-boot.sh /newroot/run/least/',
    '$B mount --bind /newroot/run/least/least-boot.sh /newroot/opt/swarm/boot.sh',
  );
  return packInitramfs(rfs, init, path.join(dir, 'least.cpio'));
}

/**
 * Where a boot's time went, from the console lines' arrival (seconds since the spawn call):
 * the first line of each stage. Node's start and the agent's load are the gap between
 * SWARM_AGENT_START and the agent's "started" line (which also says how many ms after
 * node's own start it ran).
 */
function breakdown(lines: Array<[number, string]>): Record<string, unknown> {
  const first = (re: RegExp) => lines.find(([, l]) => re.test(l))?.[0];
  // The guest's own clock: the agent's lines end with "(+<ms since node's start> ms)" (SWARM_LOG_TIMINGS).
  const guest = (re: RegExp) => {
    const ms = /\(\+(\d+) ms\)$/.exec(lines.find(([, l]) => re.test(l))?.[1] ?? '')?.[1];
    return ms === undefined ? undefined : Number(ms);
  };
  return {
    firstConsoleLine: lines[0]?.[0],
    init: first(/^SWARM_INIT/),
    cacheDriveMounted: first(/^init: cache drive mounted/),
    agentStart: first(/^SWARM_AGENT_START/),
    agentStarted: first(/^swarm-boot-agent: started /),
    metadataRead: first(/^swarm-boot-agent: metadata read/),
    fetchedOrCacheHit: first(/^swarm-boot-agent: (fetched and verified|cache hit)/),
    unpacked: first(/^swarm-boot-agent: unpacked/),
    workflowOutput: first(/^hello from the VM/),
    last: lines.at(-1)?.[0],
    guestMsSinceNodeStart: {
      agentStarted: guest(/^swarm-boot-agent: started /),
      metadataRead: guest(/^swarm-boot-agent: metadata read/),
      fetchedOrCacheHit: guest(/^swarm-boot-agent: (fetched and verified|cache hit)/),
      unpacked: guest(/^swarm-boot-agent: unpacked/),
    },
  };
}

/** Wall time of a command, process start to exit; rejects unless it exits 0. */
function wallSeconds(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c) => (err = (err + c).slice(-4000)));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve((performance.now() - t) / 1000) : reject(new Error(`${cmd} exited ${code}: ${err}`))));
  });
}

export async function vmFigure(env: BenchEnv, ctx: FigureContext, runs: number): Promise<Row[]> {
  await promisify(execFile)('bash', [path.join(root, 'scripts/vm/build-image.sh'), imageDir], { timeout: 15 * 60_000 });
  process.env.SWARM_QEMU_ACCEL ??= 'tcg';
  const accel = process.env.SWARM_QEMU_ACCEL;
  const floorInitrd = await floorInitramfs(env.workDir);
  const nodeFloorInitrd = await nodeFloorInitramfs(env.workDir);
  const leastInitrd = await leastAgentInitramfs(env.workDir, await bootShNodeFlags());
  const reg = await env.startRegistry();
  try {
    const admin = reg.client;
    await admin.call(() => admin.trpc.tenants.create.mutate({ slug: 'bench' }));
    await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'bench', name: 'vm' }));
    const src = path.join(env.workDir, 'vm-bundle');
    await fs.mkdir(src, { recursive: true });
    await fs.writeFile(path.join(src, 'index.js'), 'console.log("hello from the VM")\n');
    await fs.writeFile(path.join(src, 'swarm.json'), '{"entrypoint":["node","index.js"]}');
    await admin.uploadBundle(packDirectory(src, await listBundleEntries(src)), { workflow: 'bench/vm', activate: true });
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator' }));
    const orchestrator = createSwarmClient({ url: reg.url, token });
    const metadataPort = await freeLoopbackPort(); // nothing listens: the floor never asks
    // The CLI's bundle as `pnpm install` leaves it (built, up to date with the sources), not its rebuild, in #7c's time.
    await promisify(execFile)('pnpm', ['--loglevel', 'silent', 'swarm', '--help'], { cwd: root });

    /** One spawn through the SDK; seconds from the spawn to runtime_started, and whether it booted from the cached tree. */
    const spawnOnce = async (cacheDrive: string) => {
      const t0 = performance.now();
      const lines: Array<[number, string]> = [];
      let firstLineAt = Number.NaN; // the agent's first line, wall clock (ms)
      const out = await spawnWorkflow(orchestrator, 'bench/vm', {
        driver: 'qemu',
        imageDir,
        storeUrl: env.s3.endpoint,
        cacheDrive,
        timeoutMs: 180_000,
        onOutput: (l) => {
          lines.push([(performance.now() - t0) / 1000, l]);
          if (Number.isNaN(firstLineAt) && l.startsWith('swarm-boot-agent: started ')) firstLineAt = Date.now();
        },
      });
      if (out.exitCode !== 0) throw new Error(`the VM's workflow exited ${out.exitCode}`);
      const execution = await admin.call(() => admin.trpc.executions.get.query({ id: out.executionId }));
      const events = await admin.call(() => admin.trpc.executions.events.query({ id: out.executionId }));
      const started = events.find((e) => e.type === 'runtime_started');
      if (!started) throw new Error('no runtime_started event');
      const unpacked = events.find((e) => e.type === 'unpacked')?.data as { from?: string; checkedBy?: string } | undefined;
      if (Number.isNaN(firstLineAt)) throw new Error('no first line from the agent');
      const created = Date.parse(execution.createdAt);
      return {
        seconds: (Date.parse(started.createdAt) - created) / 1000,
        from: unpacked?.from === 'tree' ? `tree (${unpacked.checkedBy})` : 'archive',
        breakdown: breakdown(lines),
        /** The agent's first line, seconds after the registry created the execution (the origin of `seconds`). */
        firstLine: (firstLineAt - created) / 1000,
      };
    };

    /**
     * The least Node agent (leastAgentInitramfs) through the same spawn call, metadata
     * service and forwards as spawnOnce's; eager: with boot.sh's node flags. Its first line,
     * runtime_started and the VM's end, in seconds after the registry created the execution
     * (console lines stamped on arrival; the registry's and this process's clock are the host's).
     * A failed boot leaves its execution pending: harmless in the bench's own data directory.
     */
    const spawnLeast = async (cacheDrive: string, eager: boolean) => {
      const lines: Array<[number, string]> = [];
      const { forwards, ...endpoints } = vmEndpoints(orchestrator.url, { driver: 'qemu', storeUrl: env.s3.endpoint });
      const { execution, metadata } = await orchestrator.call(() =>
        orchestrator.trpc.executions.spawn.mutate({ workflow: 'bench/vm', secrets: {}, ...endpoints }),
      );
      const mmds = await startMetadataService(withExpectedWorkflow(metadata, 'bench/vm', {}), { once: true });
      let vmEndAt: number;
      try {
        const vm = await bootQemuVm({
          imageDir,
          initrd: leastInitrd,
          metadataPort: mmds.port,
          forwards,
          cacheDrive,
          settings: eager ? { least_eager: '1' } : {},
          timeoutMs: 180_000,
          onLine: (l) => lines.push([Date.now(), l]),
        });
        vmEndAt = Date.now();
        if (vm.exitCode !== 0) throw new Error(`the least agent's VM exited ${vm.exitCode}: ${vm.console.slice(-2000)}`);
      } finally {
        await mmds.close();
      }
      const events = await admin.call(() => admin.trpc.executions.events.query({ id: execution.id }));
      const started = events.find((e) => e.type === 'runtime_started');
      if (!started) throw new Error('the least agent reported no runtime_started');
      const created = Date.parse(execution.createdAt);
      const firstLineAt = lines.find(([, l]) => l.startsWith('least-agent: started'))?.[0];
      if (firstLineAt === undefined) throw new Error('no first line from the least agent');
      // Its steps on the guest's clock: "least-agent: <step> (+<ms since node's start> ms)".
      const guestMs: Record<string, number> = {};
      for (const [, l] of lines) {
        const m = /^least-agent: (.+) \(\+(\d+) ms\)$/.exec(l);
        if (m) guestMs[m[1]!] = Number(m[2]);
      }
      return {
        firstLine: (firstLineAt - created) / 1000,
        runtimeStarted: (Date.parse(started.createdAt) - created) / 1000,
        vmEnd: (vmEndAt - created) / 1000,
        guestMs,
      };
    };

    const floor: number[] = [];
    const nodeFloor: number[] = [];
    const cold: number[] = [];
    const warm: number[] = [];
    const cli: number[] = [];
    const least: number[] = [];
    const leastCli: number[] = [];
    const leastRuns: unknown[] = [];
    const froms: string[] = [];
    const breakdowns: Record<string, unknown> = {};
    for (let i = 0; i < runs; i++) {
      const f = await bootQemuVm({ imageDir, initrd: floorInitrd, rootDrive: false, metadataPort, timeoutMs: 120_000 });
      floor.push(f.durationMs / 1000);
      const drive = path.join(env.workDir, `vm-cache-${i}.ext4`);
      await createCacheDrive(drive, 64);
      const c = await spawnOnce(drive);
      cold.push(c.seconds);
      const w = await spawnOnce(drive);
      warm.push(w.seconds);
      froms.push(w.from);
      breakdowns.cold = c.breakdown;
      breakdowns.warm = w.breakdown;
      ctx.log(`  #7 console (s since spawn): cold ${JSON.stringify(c.breakdown)}; warm ${JSON.stringify(w.breakdown)}`);
      // As the README documents it: pnpm swarm spawn … --wait (process start to exit; the CLI's bundle, which pnpm install built).
      cli.push(
        await wallSeconds(
          'pnpm',
          [
            '--loglevel',
            'silent',
            'swarm',
            'spawn',
            'bench/vm',
            '--driver',
            'qemu',
            '--image-dir',
            imageDir,
            '--cache-drive',
            drive,
            '--wait',
          ],
          { ...process.env, SWARM_URL: reg.url, SWARM_TOKEN: token, S3_ENDPOINT: env.s3.endpoint },
        ),
      );
      // The least agent on plain node and with boot.sh's flags, each on a fresh cache drive.
      const runsOfLeast = [];
      for (const eager of [false, true]) {
        const drive = path.join(env.workDir, `vm-least-${i}-${eager ? 'eager' : 'plain'}.ext4`);
        await createCacheDrive(drive, 64);
        runsOfLeast.push({ eager, ...(await spawnLeast(drive, eager)) });
      }
      // Its work from its first line, after the least start at hand: its own or the agent's
      // (the agent from its snapshot may start sooner than plain node does).
      const work = Math.min(...runsOfLeast.map((l) => l.runtimeStarted - l.firstLine));
      const toEnd = Math.min(...runsOfLeast.map((l) => l.vmEnd - l.firstLine));
      least.push(Math.min(...runsOfLeast.map((l) => l.runtimeStarted), c.firstLine + work));
      // #7c's: the CLI's own start and exit (`swarm --help`), then the same on to the VM's end
      // (the workflow's run, the power-off); #7c is warm, so with the warm agent's start.
      const cliStart = await wallSeconds('pnpm', ['--loglevel', 'silent', 'swarm', '--help'], process.env);
      leastCli.push(cliStart + Math.min(...runsOfLeast.map((l) => l.vmEnd), w.firstLine + toEnd));
      leastRuns.push({ agentFirstLine: { cold: c.firstLine, warm: w.firstLine }, cliStart, runs: runsOfLeast });
      ctx.log(
        `  #7 least agent (s since the execution's creation; guest ms since node's start): ${runsOfLeast
          .map(
            (l) =>
              `${l.eager ? 'eager' : 'plain'}: first line ${l.firstLine.toFixed(2)}, runtime_started ${l.runtimeStarted.toFixed(2)}, VM end ${l.vmEnd.toFixed(2)} ${JSON.stringify(l.guestMs)}`,
          )
          .join(
            '; ',
          )}; the agent's first line cold ${c.firstLine.toFixed(2)}, warm ${w.firstLine.toFixed(2)}; CLI start ${cliStart.toFixed(2)} → 7-least ${least.at(-1)!.toFixed(2)} s, 7c-least ${leastCli.at(-1)!.toFixed(2)} s`,
      );
      // After the spawns: booting it reads node from the root drive into the host's page cache,
      // which would make the next cold spawn warmer than a cold spawn is.
      const n = await bootQemuVm({ imageDir, initrd: nodeFloorInitrd, metadataPort, timeoutMs: 120_000 });
      if (n.exitCode !== 0) throw new Error(`the node floor's node -e 0 exited ${n.exitCode}`);
      nodeFloor.push(n.durationMs / 1000);
      ctx.log(
        `  #7 run ${i + 1}: floor ${floor.at(-1)!.toFixed(1)} s, node floor ${nodeFloor.at(-1)!.toFixed(1)} s, cold spawn → runtime_started ${cold.at(-1)!.toFixed(1)} s, warm ${warm.at(-1)!.toFixed(1)} s (from the ${w.from}), swarm spawn --wait ${cli.at(-1)!.toFixed(1)} s (${accel})`,
      );
    }
    const baselineWhat = 'the floor: same kernel and qemu flags, busybox /init that powers off, qemu start to exit';
    return [
      row({
        id: '7',
        what: `VM spawn → runtime_started, cold cache drive (qemu, ${accel})`,
        unit: 's',
        baselineWhat,
        baseline: summarize(floor),
        ours: summarize(cold),
        target: { on: 'ratio', op: '<=', value: 2.0 },
        notes: { consoleSecondsSinceSpawn: breakdowns },
      }),
      row({
        id: '7b',
        what: `VM spawn → runtime_started, the same cache drive again (warm; qemu, ${accel})`,
        unit: 's',
        baselineWhat,
        baseline: summarize(floor),
        ours: summarize(warm),
        target: { on: 'ratio', op: '<=', value: 1.7 },
        notes: { warmFrom: froms },
      }),
      row({
        id: '7-node',
        what: `the floor of a Node agent: the image's first stage, then node -e 0 from the root drive, power off (qemu, ${accel})`,
        unit: 's',
        baselineWhat,
        baseline: summarize(floor),
        ours: summarize(nodeFloor),
        notes: {
          measured:
            'qemu start to exit, as the floor (power-off included): no /init work, no network, no cache drive, no agent; #7/#7b are timed from the spawn call to runtime_started, so the comparison is approximate',
        },
      }),
      row({
        id: '7-least',
        what: `an estimate of the least a Node agent can take, cold: bench/least-agent.cjs to runtime_started, from the soonest start at hand (qemu, ${accel})`,
        unit: 's',
        baselineWhat,
        baseline: summarize(floor),
        ours: summarize(least),
        notes: {
          measured:
            "seconds from the execution's creation to runtime_started (as #7); the least agent boots through the image's own /init, reads the MMDS, exchanges the token while it downloads, checks sha256, gunzips and writes the files, starts the workflow and reports runtime_started, nothing else (no validation, cache, seal, limits, other events); per run the least of: its own boot on plain node, its own with boot.sh's flags, and the cold agent's first line plus its least work from its first line",
          runs: leastRuns,
        },
      }),
      row({
        id: '7c-least',
        what: `an estimate of the least #7c can take: the CLI's start and exit (swarm --help) + the least agent's boot on to its VM's end (qemu, ${accel})`,
        unit: 's',
        baselineWhat,
        baseline: summarize(floor),
        ours: summarize(leastCli),
        notes: {
          measured:
            "wall time of pnpm swarm --help, plus the least of: the least agent's VM's end (QEMU's exit) after the execution's creation on plain node, with boot.sh's flags, or the warm agent's first line plus the least agent's time from its first line to its VM's end; the least agent downloads and unpacks where #7c is warm (its notes in 7-least give those steps on the guest's clock), which counts against it",
        },
      }),
      row({
        id: '7c',
        what: `pnpm swarm spawn … --driver qemu --wait, process start to exit (warm; qemu, ${accel})`,
        unit: 's',
        baselineWhat,
        baseline: summarize(floor),
        ours: summarize(cli),
        target: { on: 'ratio', op: '<=', value: 2.2 },
      }),
    ];
  } finally {
    await reg.stop('SIGTERM');
  }
}
