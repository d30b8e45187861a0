/**
 * Signed bundles in the boot agent (verify.ts): with a trust root the agent runs a bundle
 * only when its signature chain verifies; each way the chain can break is its own case,
 * asserting the exit code (67), the `failed{reason:"untrusted"}` event, that the store
 * was never asked for the bundle, and that nothing was unpacked or run. The real agent
 * process, a loopback bundle server and a loopback event recorder.
 */
import { type KeyObject, generateKeyPairSync, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Delegation, type SignatureMaterial, createDelegation, signStatement } from '../../sdk/src/signing/index.js';
import { eventRecorder } from './support/events.js';
import { type Blob, type Sandbox, type TestServer, bundle, manifest, sandbox, serveBundle } from './support/fixtures.js';

const RAN = 'WORKFLOW-RAN';
const UNTRUSTED = 67;
const DAY = 86_400_000;

type Pair = { publicKey: KeyObject; privateKey: KeyObject };
const pair = (): Pair => generateKeyPairSync('ed25519');

describe('boot agent with a trust root', () => {
  let sb: Sandbox;
  let server: TestServer;
  let recorder: Awaited<ReturnType<typeof eventRecorder>>;
  let app: Blob;
  let rootFile: string;
  const root = pair();
  const acmeKey = pair();
  const globexKey = pair();
  let acmeDelegation: Delegation;

  const delegate = (by: Pair, tenant: string, key: Pair, notAfter = new Date(Date.now() + 90 * DAY)) =>
    createDelegation(by.privateKey, { tenant, publicKey: key.publicKey, notAfter });

  const material = (
    o: { key?: Pair; delegation?: Delegation; tenant?: string; workflow?: string; hash?: string } = {},
  ): SignatureMaterial => ({
    ...signStatement((o.key ?? acmeKey).privateKey, {
      tenant: o.tenant ?? 'acme',
      workflow: o.workflow ?? 'app',
      bundleHash: o.hash ?? app.hash,
    }),
    delegation: o.delegation ?? acmeDelegation,
  });

  beforeAll(async () => {
    sb = await sandbox();
    recorder = await eventRecorder();
    app = bundle([manifest(0, RAN)]);
    server = await serveBundle(app.bytes);
    rootFile = path.join(sb.dir, 'root.pub');
    await fs.writeFile(rootFile, root.publicKey.export({ type: 'spki', format: 'pem' }));
    acmeDelegation = delegate(root, 'acme', acmeKey);
  });
  afterAll(async () => {
    await sb?.remove();
    await server?.close();
    await recorder?.close();
  });

  /** One boot with this metadata (and a fresh cache and workflow directory unless `warm`). */
  async function boot(metadata: Record<string, unknown>, opts: { env?: Record<string, string>; warm?: boolean } = {}) {
    if (!opts.warm) {
      await fs.rm(sb.cacheDir, { recursive: true, force: true });
      await fs.rm(sb.workflowDir, { recursive: true, force: true });
    }
    const executionId = randomUUID();
    await fs.writeFile(
      path.join(sb.dir, 'metadata.json'),
      JSON.stringify({
        bundle: { url: server.url(), hash: app.hash, size: app.bytes.length },
        expectedWorkflow: 'acme/app',
        apiUrl: recorder.url,
        execution: { id: executionId, agentToken: 'agent-token-1' },
        ...metadata,
      }),
    );
    const requestsBefore = server.requests.length;
    const r = await sb.run([], { SWARM_TRUST_ROOT: rootFile, ...opts.env });
    const events = recorder.events.filter((e) => e.executionId === executionId);
    return { ...r, events, fetched: server.requests.length - requestsBefore };
  }

  /** The refusal every case must show: 67, the event, no download, nothing unpacked, nothing run. */
  async function expectRefused(r: Awaited<ReturnType<typeof boot>>, failure: RegExp) {
    expect(r.code, r.stderr).toBe(UNTRUSTED);
    expect(r.stderr).toMatch(failure);
    expect(r.stdout + r.stderr).not.toContain(`${RAN}\n`);
    const failed = r.events.find((e) => e.type === 'failed');
    expect(failed?.data.reason).toBe('untrusted');
    expect(r.events.map((e) => e.type)).not.toContain('unpacked');
    expect(r.fetched).toBe(0);
    expect(await fs.readdir(sb.workflowDir).catch(() => [])).toEqual([]);
  }

  it('a signed bundle boots, and says whose key signed it', async () => {
    const r = await boot({ signing: material() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(RAN);
    expect(r.stderr).toContain('signature verified');
    const verified = r.events.find((e) => e.type === 'signature_verified');
    expect(verified?.data).toMatchObject({ tenant: 'acme', workflow: 'app' });
  });

  it('an unsigned bundle (signing fields removed from the metadata) is refused', async () => {
    await expectRefused(await boot({}), /untrusted: bundle [0-9a-f]{12} is unsigned/);
  });

  it('a statement for another bundle hash is refused', async () => {
    await expectRefused(await boot({ signing: material({ hash: 'f'.repeat(64) }) }), /wrong_bundle/);
  });

  it('a statement for another workflow is refused', async () => {
    await expectRefused(await boot({ signing: material({ workflow: 'other' }) }), /wrong_workflow/);
  });

  it("another tenant's delegated key is refused", async () => {
    // globex's key, properly delegated to globex, signing a statement that claims acme.
    const m = material({ key: globexKey, delegation: delegate(root, 'globex', globexKey) });
    await expectRefused(await boot({ signing: m }), /wrong_tenant/);
  });

  it("the registry answering with another tenant's validly signed version is refused (the orchestrator's workflow wins)", async () => {
    const m = material({ key: globexKey, delegation: delegate(root, 'globex', globexKey), tenant: 'globex' });
    await expectRefused(await boot({ signing: m }), /wrong_tenant: the signing key is delegated to tenant "globex", not "acme"/);
  });

  it('a delegation not signed by the root is refused', async () => {
    const impostor = pair();
    await expectRefused(await boot({ signing: material({ delegation: delegate(impostor, 'acme', acmeKey) }) }), /bad_root_signature/);
  });

  it('an expired delegation is refused', async () => {
    const expired = delegate(root, 'acme', acmeKey, new Date(Date.now() - 1000));
    await expectRefused(await boot({ signing: material({ delegation: expired }) }), /delegation_expired/);
  });

  it('a corrupted signature is refused', async () => {
    const m = material();
    const sig = Buffer.from(m.signature, 'base64');
    sig[0]! ^= 0xff;
    await expectRefused(await boot({ signing: { ...m, signature: sig.toString('base64') } }), /bad_signature/);
  });

  it('metadata that does not name the expected workflow is refused', async () => {
    await expectRefused(await boot({ signing: material(), expectedWorkflow: undefined }), /does not name the workflow/);
  });

  it("with a bundle, the registry's `workflow` is never the expected one: spawn by id (no expectedWorkflow) is refused", async () => {
    // A registry answering a spawn by workflow id names another tenant's workflow, whose signed bundle it serves.
    const m = material({ key: globexKey, delegation: delegate(root, 'globex', globexKey), tenant: 'globex' });
    await expectRefused(
      await boot({ signing: m, expectedWorkflow: undefined, workflow: 'globex/app' }),
      /does not name the workflow.*spawn by tenant\/name/,
    );
  });

  it('a cached bundle (warm boot) is checked too: a bad signature is refused before the cached tree is linked', async () => {
    const ok = await boot({ signing: material() });
    expect(ok.code, ok.stderr).toBe(0);
    await fs.rm(sb.workflowDir, { recursive: true, force: true });
    await expectRefused(await boot({ signing: material({ workflow: 'other' }) }, { warm: true }), /wrong_workflow/);
  });

  it('a trust root named explicitly but missing fails closed', async () => {
    await expectRefused(
      await boot({ signing: material() }, { env: { SWARM_TRUST_ROOT: path.join(sb.dir, 'missing.pub') } }),
      /cannot read the trust root/,
    );
  });

  it('a PRIVATE key given as the trust root fails closed', async () => {
    const file = path.join(sb.dir, 'root.key');
    await fs.writeFile(file, root.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await expectRefused(await boot({ signing: material() }, { env: { SWARM_TRUST_ROOT: file } }), /is a PRIVATE key/);
  });

  it('without a trust root the agent behaves as before, and says so once', async () => {
    // No SWARM_TRUST_ROOT, and the image default (/opt/swarm/trust/root.pub) is absent on this host.
    await fs.writeFile(path.join(sb.dir, 'metadata.json'), '{}');
    const none = await sb.run(['--bundle-url', server.url(), '--bundle-hash', app.hash], {});
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toContain(RAN);
    expect(none.stderr.match(/no trust root/g)).toHaveLength(1);
  });
});
