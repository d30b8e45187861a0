/**
 * Figure 7 (report only): a real qemu VM (TCG here: nested KVM hangs) from the spawn call
 * to the agent's runtime_started event, against the same image booting to /init and
 * powering off with no agent (`swarm.probe=1`). The image is scripts/vm/build-image.sh's
 * (.swarm/vm), rebuilt only when its inputs changed, as test/vm.test.ts does.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { createSwarmClient, listBundleEntries, packDirectory } from '../packages/sdk/src/index.js';
import { bootQemuVm, spawnWorkflow } from '../packages/sdk/src/orchestrator/index.js';
import { freeLoopbackPort } from '../packages/server/src/db/embedded.js';
import { type BenchEnv, root } from './lib/env.js';
import { type FigureContext, type Row, row } from './lib/figure.js';
import { summarize } from './lib/stats.js';

const imageDir = path.join(root, '.swarm/vm');

export async function vmFigure(env: BenchEnv, ctx: FigureContext, runs: number): Promise<Row[]> {
  await promisify(execFile)('bash', [path.join(root, 'scripts/vm/build-image.sh'), imageDir], { timeout: 15 * 60_000 });
  process.env.SWARM_QEMU_ACCEL ??= 'tcg';
  const accel = process.env.SWARM_QEMU_ACCEL;
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
    const metadataPort = await freeLoopbackPort(); // nothing listens: the probe boot never asks

    const base: number[] = [];
    const ours: number[] = [];
    for (let i = 0; i < runs; i++) {
      const probe = await bootQemuVm({ imageDir, metadataPort, settings: { probe: '1' }, timeoutMs: 120_000 });
      if (probe.timings.bootToInitMs === undefined) throw new Error('the probe boot printed no SWARM_INIT line');
      base.push(probe.timings.bootToInitMs / 1000);
      const out = await spawnWorkflow(orchestrator, 'bench/vm', {
        driver: 'qemu',
        imageDir,
        storeUrl: env.s3.endpoint,
        timeoutMs: 180_000,
      });
      if (out.exitCode !== 0) throw new Error(`the VM's workflow exited ${out.exitCode}`);
      const execution = await admin.call(() => admin.trpc.executions.get.query({ id: out.executionId }));
      const events = await admin.call(() => admin.trpc.executions.events.query({ id: out.executionId }));
      const started = events.find((e) => e.type === 'runtime_started');
      if (!started) throw new Error('no runtime_started event');
      ours.push((Date.parse(started.createdAt) - Date.parse(execution.createdAt)) / 1000);
      ctx.log(
        `  #7 run ${i + 1}: boot to /init ${base.at(-1)!.toFixed(1)} s, spawn → runtime_started ${ours.at(-1)!.toFixed(1)} s (${accel})`,
      );
    }
    return [
      row({
        id: '7',
        what: `VM spawn → runtime_started (qemu, ${accel})`,
        unit: 's',
        baselineWhat: 'the same VM image booting to /init, no agent',
        baseline: summarize(base),
        ours: summarize(ours),
      }),
    ];
  } finally {
    await reg.stop('SIGTERM');
  }
}
