/**
 * Signed bundles in a real VM (docs/signing.md): an image built with
 * `scripts/vm/build-image.sh --trust-root` boots a signed bundle, and refuses (exit 67,
 * `failed{reason:"untrusted"}`, nothing run) a version put into the database by SQL, as a
 * compromised registry would. The image has its own directory (.swarm/vm-signed) and a
 * test root kept there, so it is rebuilt only when its inputs change. Skipped, loudly,
 * only where the image cannot be built.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { spawnWorkflow } from '../packages/sdk/src/orchestrator/index.js';
import { createDelegation, privateKeyFrom } from '../packages/sdk/src/signing/index.js';
import { bundleOf } from './support/bundles.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

const root = path.resolve(import.meta.dirname, '..');
const imageDir = path.join(root, '.swarm/vm-signed');
const rootKeyFile = path.join(imageDir, 'test-root.key');
const rootPubFile = path.join(imageDir, 'test-root.pub');
const BOOT_TIMEOUT_MS = 240_000;

// A test root kept beside the image: a fresh one each run would rebuild the initramfs each run.
await fs.mkdir(imageDir, { recursive: true });
if (!(await fs.stat(rootKeyFile).catch(() => null))) {
  const pair = generateKeyPairSync('ed25519');
  await fs.writeFile(rootKeyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await fs.writeFile(rootPubFile, pair.publicKey.export({ type: 'spki', format: 'pem' }));
}
let imageError: string | undefined;
try {
  await promisify(execFile)('bash', [path.join(root, 'scripts/vm/build-image.sh'), '--trust-root', rootPubFile, imageDir], {
    timeout: 15 * 60_000,
  });
} catch (err) {
  imageError = `${(err as Error).message}`.slice(0, 2000);
  console.warn(`\n!!! qemu signing tests SKIPPED: the VM image could not be built\n${imageError}\n`);
}

describe.skipIf(imageError !== undefined)('the qemu VM with a trust root in its image', () => {
  let reg: TestRegistry;
  let work: string;
  let sql: postgres.Sql;
  let storeUrl: string;
  const ci = generateKeyPairSync('ed25519');

  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 's3' });
    storeUrl = inject('s3').endpoint;
    sql = postgres(reg.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-vm-signing-'));
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'signed' }));
    const rootKey = privateKeyFrom(await fs.readFile(rootKeyFile, 'utf8'));
    const delegation = createDelegation(rootKey, { tenant: 'acme', publicKey: ci.publicKey, notAfter: new Date(Date.now() + 86_400_000) });
    await c.call(() => c.trpc.keys.add.mutate({ tenant: 'acme', delegation }));
  });
  afterAll(async () => {
    await sql?.end();
    await reg?.close();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  async function push(label: string, signed: boolean) {
    const file = await bundleOf(path.join(work, label), {
      'swarm.json': JSON.stringify({ entrypoint: ['sh', '-c', `echo ${label}-RAN`] }),
    });
    return reg.client().uploadBundle(file, { workflow: 'acme/signed', ...(signed ? { signingKey: ci.privateKey } : {}) });
  }

  async function boot() {
    const c = reg.client();
    const lines: string[] = [];
    const out = await spawnWorkflow(c, 'acme/signed', {
      driver: 'qemu',
      imageDir,
      storeUrl,
      timeoutMs: BOOT_TIMEOUT_MS,
      onOutput: (l) => lines.push(l),
    });
    const events = await c.call(() => c.trpc.executions.events.query({ id: out.executionId }));
    return { exitCode: out.exitCode, console: lines.join('\n'), events };
  }

  it('boots a signed bundle', async () => {
    await push('SIGNED', true);
    const c = reg.client();
    await c.call(() => c.trpc.versions.activate.mutate({ workflow: 'acme/signed', version: 1 }));
    const r = await boot();
    expect(r.exitCode, r.console).toBe(0);
    expect(r.console).toContain('SIGNED-RAN');
    expect(r.events.map((e) => e.type)).toContain('signature_verified');
  });

  it('refuses a version inserted and activated by SQL (a compromised registry): exit 67, nothing unpacked or run', async () => {
    await push('PLANTED', false);
    // Straight into PostgreSQL, as a compromised registry would: the unsigned version 2
    // carries version 1's signature and becomes active.
    await sql`
      update workflow_versions v2 set signature = v1.signature, signature_statement = v1.signature_statement, signing_key_id = v1.signing_key_id
      from workflow_versions v1 where v1.workflow_id = v2.workflow_id and v1.version = 1 and v2.version = 2`;
    await sql`update workflows w set active_version_id = v.id from workflow_versions v where v.workflow_id = w.id and v.version = 2`;
    await sql`select pg_notify('swarm_release', id::text) from workflows`;
    const r = await boot();
    expect(r.exitCode, r.console).toBe(67);
    expect(r.console).toContain('wrong_bundle');
    expect(r.console).not.toContain('PLANTED-RAN');
    expect(r.events.find((e) => e.type === 'failed')?.data).toMatchObject({ reason: 'untrusted' });
    expect(r.events.map((e) => e.type)).not.toContain('unpacked');
    expect(r.events.map((e) => e.type)).not.toContain('fetched');
  });
});
