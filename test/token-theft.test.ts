/**
 * Issue #12 §1 with the `process` driver, end to end against the real registry: a
 * workload that tries /proc/$PPID/environ, /proc/$PPID/mem and the metadata service for
 * its execution's agent credential, then posts a forged `runtime_exited {"code":0}` with
 * whatever it found, comes away with nothing live, and the registry records the real
 * exit. (Before: the workload ran as root beside the agent, read SWARM_MMDS_URL from the
 * agent's environment and the token from the metadata service, and its forged event won.)
 * The same attack in a qemu VM is in vm.test.ts.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVm } from '../packages/sdk/src/orchestrator/index.js';
import { bundleOf } from './support/bundles.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';
import { THEFT_EXIT_CODE, expectRealResultAndDeadToken, handOverMetadataAddress, theftProgram, theftReport } from './support/theft.js';

const agentPath = path.resolve(import.meta.dirname, '../packages/boot-agent/dist/boot-agent.mjs');

describe('a workload after its agent credential (process driver)', () => {
  let reg: TestRegistry;
  let work: string;
  beforeAll(async () => {
    await promisify(execFile)('pnpm', ['--filter', '@swarm/boot-agent', 'run', 'build']);
    reg = await startTestRegistry({ storage: 'fs' });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-theft-'));
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'thief' }));
    const file = await bundleOf(path.join(work, 'thief'), { 'index.js': theftProgram, 'swarm.json': '{"entrypoint":["node","index.js"]}' });
    await c.uploadBundle(file, { workflow: 'acme/thief', activate: true });
  }, 180_000);
  afterAll(async () => {
    await reg?.close();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('finds nothing live in /proc, the metadata service or anywhere else, and cannot forge its result', async () => {
    const admin = reg.client();
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'orchestrator' }));
    const orchestrator = reg.client(token);
    const { execution, metadata } = await orchestrator.call(() =>
      orchestrator.trpc.executions.spawn.mutate({ workflow: 'acme/thief', secrets: { API_URL: reg.url } }),
    );
    metadata.secrets = { ...metadata.secrets, EXECUTION_ID: execution.id };

    const exit = await runVm(metadata, { driver: 'process', agentPath, onOutput: handOverMetadataAddress, timeoutMs: 120_000 });
    const report = theftReport(exit.output);

    // The workload runs as another user than the agent: the kernel keeps it out of the agent's process.
    expect(report.uid).not.toBe(0);
    expect({ environ: report.environ, mem: report.mem }).toEqual({ environ: 'EACCES', mem: 'EACCES' });
    // The metadata service answered the agent once and has nothing left for anyone else.
    expect(report.mmds).toMatchObject({ token: 200, document: 404, agentToken: 404 });
    expect(report.tokens).toEqual([]);
    expect(report.forged.length).toBeGreaterThan(0);
    for (const forged of report.forged) expect(forged.status, JSON.stringify(forged)).toBe(401);

    // The registry has the real exit, reported by the agent.
    expect(exit.exitCode, exit.output).toBe(THEFT_EXIT_CODE);
    // And the credential the metadata carried is dead now.
    await expectRealResultAndDeadToken(reg, execution.id, metadata.execution!.agentToken);
  });
});
