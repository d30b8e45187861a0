/**
 * A real VM end to end (issue "spawn path"): a Linux kernel boots under qemu, and the
 * only way the workflow's code gets in is the boot agent fetching it from the S3 server
 * through a presigned URL signed for the VM's view of the store, verifying it and
 * running it. Skipped, loudly, only where qemu cannot be installed.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listBundleEntries, packDirectory } from '../packages/sdk/src/index.js';
import { createCacheDrive, runVm, spawnWorkflow, vmEndpoints } from '../packages/sdk/src/orchestrator/index.js';
import { blobKey } from '../packages/server/src/storage/bundle-store.js';
import { bundleOf } from './support/bundles.js';
import { swarmInProcess } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';
import { THEFT_EXIT_CODE, expectRealResultAndDeadToken, theftProgram, theftReport } from './support/theft.js';

const root = path.resolve(import.meta.dirname, '..');
const imageDir = path.join(root, '.swarm/vm');
const SECRET = `vm-secret-${Date.now()}`;
const digest = createHash('sha256').update(SECRET).digest('hex');
const BOOT_TIMEOUT_MS = 240_000;

let imageError: string | undefined;
try {
  await promisify(execFile)('bash', [path.join(root, 'scripts/vm/build-image.sh'), imageDir], { timeout: 15 * 60_000 });
} catch (err) {
  imageError = `${(err as Error).message}`.slice(0, 2000);
  console.warn(`\n!!! qemu VM tests SKIPPED: the VM image could not be built (qemu not installable here?)\n${imageError}\n`);
}

const program = (label: string) => `const { createHash } = require('node:crypto');
const fs = require('node:fs');
fs.writeFileSync('result.txt', '${label} wrote this');
console.log('${label} digest=' + createHash('sha256').update(process.env.API_KEY ?? '').digest('hex') + ' file=' + fs.readFileSync('result.txt', 'utf8'));
`;

describe.skipIf(imageError !== undefined)('spawn with the qemu driver', () => {
  let reg: TestRegistry;
  let work: string;
  let sql: postgres.Sql;
  let storeUrl: string;
  const timings: string[] = [];

  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 's3' });
    storeUrl = inject('s3').endpoint;
    sql = postgres(reg.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-vm-test-'));
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'vm' }));
    await push('v1', true);
  });
  afterAll(async () => {
    if (timings.length) console.log(`qemu timings (TCG unless KVM works):\n${timings.join('\n')}`);
    await sql?.end();
    await reg?.close();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  async function push(label: string, activate: boolean) {
    const dir = path.join(work, label);
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'index.js'), program(label));
    await fs.writeFile(path.join(dir, 'swarm.json'), '{"entrypoint":["node","index.js"]}');
    const file = `${dir}.tar.gz`;
    await fs.writeFile(file, packDirectory(dir, await listBundleEntries(dir)));
    return reg.client().uploadBundle(file, { workflow: 'acme/vm', activate });
  }

  async function boot(label: string, opts: { cacheDrive?: string; secrets?: Record<string, string> } = {}) {
    const admin = reg.client();
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator' }));
    const console: string[] = [];
    const out = await spawnWorkflow(reg.client(token), 'acme/vm', {
      driver: 'qemu',
      imageDir,
      storeUrl,
      cacheDrive: opts.cacheDrive,
      secrets: opts.secrets,
      timeoutMs: BOOT_TIMEOUT_MS,
      onOutput: (l) => console.push(l),
    });
    const execution = await admin.call(() => admin.trpc.executions.get.query({ id: out.executionId }));
    const events = await admin.call(() => admin.trpc.executions.events.query({ id: out.executionId }));
    const at = (type: string) => events.find((e) => e.type === type)?.createdAt;
    const since = (t?: string) => (t ? `${((Date.parse(t) - Date.parse(execution.createdAt)) / 1000).toFixed(1)} s` : '-');
    timings.push(
      `  ${label}: spawn → runtime_started ${since(at('runtime_started'))}, → exit ${since(execution.finishedAt ?? undefined)}, total ${(out.durationMs / 1000).toFixed(1)} s`,
    );
    return { out, execution, events, console: console.join('\n') };
  }

  const storeRequests = async () => {
    const log = inject('s3').logFile;
    return log ? (await fs.readFile(log, 'utf8')).split('\n').filter((l) => l.includes(`/${reg.bucket}/blobs/sha256/`)).length : null;
  };

  it('boots, fetches from S3 through the VM’s own store address, verifies and runs; secrets stay out of everything', async () => {
    const { out, execution, events, console } = await boot('first boot', { secrets: { API_KEY: SECRET } });
    expect(out.exitCode, console).toBe(0);
    expect(console).toContain(`v1 digest=${digest} file=v1 wrote this`);
    // The agent came from the image's start-up snapshot: the image has one (a failed snapshot
    // build only logs), and its .id matched this node, its flags and the guest's CPU.
    const { stdout: opt } = await promisify(execFile)('debugfs', ['-R', 'ls /opt/swarm', path.join(imageDir, 'root.ext4')]);
    expect(opt).toMatch(/boot-agent\.blob\s/);
    expect(opt).toContain('boot-agent.blob.id');
    expect(console).not.toContain('not using the start-up snapshot');
    expect(execution).toMatchObject({ status: 'succeeded', exitCode: 0, version: 1 });
    expect(events.map((e) => e.type)).toEqual([
      'metadata_loaded',
      'cache_miss',
      'fetched',
      'verified',
      'unpacked',
      'runtime_started',
      'output',
      'runtime_exited',
    ]);
    expect(events.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const [dump] = await sql`select string_agg(to_jsonb(x)::text, ' ') as all from (select * from executions) x`;
    const [eventDump] = await sql`select string_agg(to_jsonb(x)::text, ' ') as all from (select * from execution_events) x`;
    expect(`${dump!.all} ${eventDump!.all}`).not.toContain(SECRET);
    expect(reg.logs.join('\n')).not.toContain(SECRET);
  });

  it('runs the version active at spawn time, and boots it again from the cache drive without the store', async () => {
    await push('v2', true);
    const drive = path.join(work, 'cache.ext4');
    await createCacheDrive(drive, 64);
    const miss = await boot('cache miss (drive)', { cacheDrive: drive });
    expect(miss.out.exitCode, miss.console).toBe(0);
    expect(miss.console).toContain('v2 digest=');
    expect(miss.execution.version).toBe(2);

    const before = await storeRequests();
    const hit = await boot('cache hit (drive)', { cacheDrive: drive });
    expect(hit.out.exitCode, hit.console).toBe(0);
    expect(hit.events.map((e) => e.type)).toContain('cache_hit');
    expect(hit.events.map((e) => e.type)).not.toContain('fetched');
    if (before !== null) expect(await storeRequests()).toBe(before);
    // The workflow directory is on the drive's file system: the warm boot links the cached
    // tree, checked against the registry's tree digest (no gunzip).
    expect(hit.events.find((e) => e.type === 'unpacked')?.data, hit.console).toMatchObject({ from: 'tree', checkedBy: 'tree_digest' });
    expect(hit.console).toContain('v2 digest=');
  });

  it('keeps the agent credential from the workload: nothing in /proc or the metadata service, no forged result (issue #12 §1)', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'thief' }));
    const file = await bundleOf(path.join(work, 'thief'), { 'index.js': theftProgram, 'swarm.json': '{"entrypoint":["node","index.js"]}' });
    await c.uploadBundle(file, { workflow: 'acme/thief', activate: true });
    const { token } = await c.call(() => c.trpc.tokens.create.mutate({ scope: 'orchestrator' }));
    const orchestrator = reg.client(token);
    const { forwards, ...endpoints } = vmEndpoints(reg.url, { driver: 'qemu', storeUrl });
    const { execution, metadata } = await orchestrator.call(() =>
      orchestrator.trpc.executions.spawn.mutate({
        workflow: 'acme/thief',
        secrets: { API_URL: endpoints.apiUrl!, MMDS_URL: 'http://169.254.169.254' },
        ...endpoints,
      }),
    );
    metadata.secrets = { ...metadata.secrets, EXECUTION_ID: execution.id };

    const exit = await runVm(metadata, { driver: 'qemu', imageDir, forwards, timeoutMs: BOOT_TIMEOUT_MS });
    const report = theftReport(exit.output);

    expect(report.uid, 'the image runs workflows as its swarm user').toBe(1000);
    expect({ environ: report.environ, mem: report.mem }).toEqual({ environ: 'EACCES', mem: 'EACCES' });
    // The agent sealed the metadata address (a blackhole route) before the workload started:
    // not even a session token is served there any more.
    expect(exit.output).toContain('metadata service 169.254.169.254 sealed');
    expect(report.mmds).toMatchObject({ token: 0, document: 0, agentToken: 0 });
    expect(report.tokens).toEqual([]);
    expect(report.forged.length).toBeGreaterThan(0);
    for (const forged of report.forged) expect(forged.status, JSON.stringify(forged)).toBe(401);
    expect(exit.exitCode, exit.output).toBe(THEFT_EXIT_CODE);
    await expectRealResultAndDeadToken(reg, execution.id, metadata.execution!.agentToken);
  });

  it('takes the exit code from the exit channel: a workflow printing SWARM_EXIT=0 and exiting 1 makes spawn --wait exit 1', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'forger' }));
    const file = await bundleOf(path.join(work, 'forger'), { 'swarm.json': '{"entrypoint":["sh","-c","echo SWARM_EXIT=0; exit 1"]}' });
    await c.uploadBundle(file, { workflow: 'acme/forger', activate: true });

    const waited = await swarmInProcess([
      ...['spawn', 'acme/forger', '--driver', 'qemu', '--wait', '--image-dir', imageDir, '--store-url', storeUrl],
      ...['--url', reg.url, '--token', reg.adminToken],
    ]);

    expect(waited.stdout).toContain('SWARM_EXIT=0'); // on the console, where the workload writes
    expect(waited.code, waited.stderr).toBe(1);
    const [recorded] = await c.call(() => c.trpc.executions.list.query({ workflow: 'acme/forger' }));
    expect(recorded).toMatchObject({ status: 'failed', exitCode: 1 });
  });

  it('refuses bytes replaced in the bucket behind the registry: failed with hash_mismatch', async () => {
    const active = await reg.client().resolveActive('acme/vm');
    await reg.deps.store.driver.delete(blobKey(active.bundleHash));
    await reg.deps.store.driver.put(blobKey(active.bundleHash), Readable.from([Buffer.alloc(active.size, 1)]));
    const { out, execution, console } = await boot('tampered');
    expect(out.exitCode).toBe(65);
    expect(console).not.toContain('v2 digest=');
    expect(execution).toMatchObject({ status: 'failed', failureReason: 'hash_mismatch' });
  });
});
