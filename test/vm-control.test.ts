/**
 * Output capture and cancel (#16) in a real VM (qemu, TCG): the workflow's output reaches
 * the registry masked and the console masked too; a running execution is cancelled through
 * its agent (the VM takes no inbound connection: the agent hears of it in a heartbeat's
 * answer). Kept to two boots: VM tests are slow under TCG. Skipped, loudly, only where the
 * VM image cannot be built.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ExecutionEvent } from '../packages/sdk/src/contract/index.js';
import { spawnWorkflow } from '../packages/sdk/src/orchestrator/index.js';
import { bundleOf } from './support/bundles.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

const root = path.resolve(import.meta.dirname, '..');
const imageDir = path.join(root, '.swarm/vm');
const SECRET = `vm-output-secret-${Date.now()}`;
const BOOT_TIMEOUT_MS = 300_000;

let imageError: string | undefined;
try {
  await promisify(execFile)('bash', [path.join(root, 'scripts/vm/build-image.sh'), imageDir], { timeout: 15 * 60_000 });
} catch (err) {
  imageError = `${(err as Error).message}`.slice(0, 2000);
  console.warn(`\n!!! qemu VM tests SKIPPED: the VM image could not be built (qemu not installable here?)\n${imageError}\n`);
}

const PROGRAM = `const s = process.env.API_KEY;
process.stdout.write('whole ' + s + '\\n');
process.stdout.write('split ' + s.slice(0, 9));
setTimeout(() => process.stdout.write(s.slice(9) + ' end\\n'), 20);
if (process.argv[2] === 'wait') {
  process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(143); });
  setTimeout(() => console.log('waiting'), 50);
  setInterval(() => {}, 1000);
}`;

type Lines = Array<{ stream: string; text: string }>;
const outputLines = (events: ExecutionEvent[]): string[] =>
  events.filter((e) => e.type === 'output').flatMap((e) => (e.data.lines as Lines).map((l) => l.text));

describe.skipIf(imageError !== undefined)('output and cancel in a qemu VM', () => {
  let reg: TestRegistry;
  let work: string;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 's3', env: { SWARM_HEARTBEAT_SECONDS: '2' } });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-vm-control-'));
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'vm' }));
    const bundle = await bundleOf(path.join(work, 'app'), { 'run.js': PROGRAM, 'swarm.json': '{"entrypoint":["node","run.js"]}' });
    await c.uploadBundle(bundle, { workflow: 'acme/vm', activate: true });
  }, 120_000);
  afterAll(async () => {
    await reg?.close();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  const events = async (id: string) => {
    const all: ExecutionEvent[] = [];
    for await (const e of reg.client().executionEvents(id)) all.push(e);
    return all;
  };
  const run = (command: string[], onLine: (line: string, id: string) => void = () => {}) => {
    let id = '';
    return spawnWorkflow(reg.client(), 'acme/vm', {
      driver: 'qemu',
      imageDir,
      storeUrl: inject('s3').endpoint,
      secrets: { API_KEY: SECRET },
      runtime: { command },
      timeoutMs: BOOT_TIMEOUT_MS,
      onSpawned: (e) => (id = e.id),
      onOutput: (line) => onLine(line, id),
    });
  };

  it("captures the workflow's output with the secret masked, on the console too", async () => {
    const out = await run(['node', 'run.js']);
    expect(out.exitCode, out.output).toBe(0);
    expect(outputLines(await events(out.executionId))).toEqual(['whole ***', 'split *** end']);
    expect(out.output).toContain('whole ***');
    expect(out.output).not.toContain(SECRET);
    expect(reg.logs.join('\n')).not.toContain(SECRET);
  });

  it('cancels a running execution: the agent hears it in a heartbeat answer, SIGTERMs the workflow and reports cancelled', async () => {
    const c = reg.client();
    const out = await run(['node', 'run.js', 'wait'], (line, id) => {
      if (line.includes('waiting')) void c.call(() => c.trpc.executions.cancel.mutate({ id }));
    });
    const e = await c.call(() => c.trpc.executions.get.query({ id: out.executionId }));
    expect(e, out.output).toMatchObject({ status: 'cancelled', exitCode: 143 });
    expect(out.output).toContain('got SIGTERM');
    expect((await events(out.executionId)).at(-1)).toMatchObject({ type: 'runtime_exited', data: { stopped: 'cancelled' } });
  });
});
