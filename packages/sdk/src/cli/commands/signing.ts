/**
 * Signed bundles (docs/signing.md): `swarm keys generate|add|list|revoke`, `swarm trust
 * delegate`, `swarm sign` and `swarm policy`. Private keys are read here and never sent.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { type Delegation, type SignaturePolicy, delegation as delegationSchema, tenantSlug } from '../../contract/index.js';
import { SwarmError } from '../../errors.js';
import { bundleDigests, readSigningKey, splitWorkflowRef } from '../../sign-bundle.js';
import { createDelegation, generateSigningKey, keyId, parseDuration, publicKeyFrom, signStatement } from '../../signing/index.js';
import type { Cli } from '../context.js';
import { WORKFLOW, asVersion } from '../options.js';

const asTenant = (what: string) => (text: string) => {
  const r = tenantSlug.safeParse(text);
  if (!r.success) throw new SwarmError('INVALID_INPUT', `${what} must be a tenant slug, not "${text}"`);
  return r.data;
};
const asKeyId = (text: string) => {
  if (!/^[0-9a-f]{64}$/.test(text)) {
    throw new SwarmError('INVALID_INPUT', `key id must be 64 lowercase hex, not "${text}"`, 'list them: swarm keys list <tenant>');
  }
  return text;
};

async function readText(file: string, what: string): Promise<string> {
  return fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new SwarmError('INVALID_INPUT', `cannot read ${what} ${file}: ${err.code ?? err.message}`);
  });
}

async function readDelegation(file: string): Promise<Delegation> {
  let json: unknown;
  try {
    json = JSON.parse(await readText(file, 'delegation'));
  } catch (err) {
    if (err instanceof SwarmError) throw err;
    throw new SwarmError('INVALID_INPUT', `${file} is not JSON`, 'it is the file swarm trust delegate -o wrote');
  }
  const r = delegationSchema.safeParse(json);
  if (!r.success) throw new SwarmError('INVALID_INPUT', `${file} is not a delegation`, 'it is the file swarm trust delegate -o wrote');
  return r.data;
}

/** Writes a new file, refusing to overwrite one (a key pair is not replaced by accident). */
async function writeNew(file: string, text: string, mode: number): Promise<void> {
  await fs.writeFile(file, text, { flag: 'wx', mode }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EEXIST') throw new SwarmError('INVALID_INPUT', `${file} exists already`, 'choose another name, or remove it first');
    throw new SwarmError('INVALID_INPUT', `cannot write ${file}: ${err.code ?? err.message}`);
  });
  await fs.chmod(file, mode);
}

export function registerSigningCommands(program: Command, cli: Cli): void {
  const keys = program.command('keys').description("tenants' bundle signing keys (docs/signing.md)");
  keys
    .command('generate <name>')
    .description('create an Ed25519 key pair here: <name>.key (private, PKCS#8 PEM, mode 0600) and <name>.pub (SPKI PEM)')
    .action(async (name: string) => {
      const k = generateSigningKey();
      const keyFile = `${name}.key`;
      const pubFile = `${name}.pub`;
      await writeNew(keyFile, k.privateKeyPem, 0o600);
      await writeNew(pubFile, k.publicKeyPem, 0o644).catch(async (err: unknown) => {
        await fs.rm(keyFile, { force: true });
        throw err;
      });
      cli.output({ privateKey: path.resolve(keyFile), publicKey: path.resolve(pubFile), keyId: k.keyId }, (v) => {
        cli.print(`wrote ${keyFile} (keep it secret) and ${pubFile}; key id ${v.keyId}`);
      });
    });
  keys
    .command('add')
    .description("register a tenant's key from its delegation by the platform root (admin, or the tenant's token)")
    .argument('<tenant>', 'tenant slug', asTenant('tenant'))
    .argument('<delegation.json>', 'written by swarm trust delegate')
    .action(async (tenant: string, file: string) => {
      const delegation = await readDelegation(file);
      const c = cli.client();
      const r = await c.call(() => c.trpc.keys.add.mutate({ tenant, delegation }));
      cli.output(r, (v) =>
        cli.print(
          `${v.created ? 'added' : v.renewed ? 're-delegated' : 'already had'} key ${v.key.keyId} for ${tenant} (delegated until ${v.key.notAfter})`,
        ),
      );
    });
  keys
    .command('list')
    .description("a tenant's signing keys")
    .argument('<tenant>', 'tenant slug', asTenant('tenant'))
    .action(async (tenant: string) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.keys.list.query({ tenant })), (rows) =>
        cli.table(rows, [
          ['KEY ID', (k) => k.keyId],
          ['NOT AFTER', (k) => k.notAfter],
          ['ADDED BY', (k) => k.createdBy],
          ['REVOKED', (k) => k.revokedAt ?? '-'],
        ]),
      );
    });
  keys
    .command('revoke')
    .description('stop the registry accepting a key at release and spawn (a VM: once its delegation expires)')
    .argument('<tenant>', 'tenant slug', asTenant('tenant'))
    .argument('<key-id>', 'as swarm keys list shows it', asKeyId)
    .action(async (tenant: string, id: string) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.keys.revoke.mutate({ tenant, keyId: id })), (k) =>
        cli.print(`revoked key ${k.keyId} of ${tenant} (${k.revokedAt})`),
      );
    });

  program
    .command('trust')
    .description('the platform root (offline)')
    .command('delegate')
    .description("sign, with the root's private key, a delegation of a tenant's public key (no registry involved)")
    .requiredOption('--root <file>', "the root's private key (PKCS#8 PEM)")
    .addOption(new Option('--tenant <slug>', 'the tenant the key signs for').argParser(asTenant('--tenant')).makeOptionMandatory())
    .requiredOption('--key <file>', "the tenant key's public half (<name>.pub)")
    .option('--expires <duration>', 'how long the delegation holds: 90d, 12h, 30m', '90d')
    .requiredOption('-o, --output <file>', 'where to write the delegation (JSON)')
    .action(async (o: { root: string; tenant: string; key: string; expires: string; output: string }) => {
      let ms: number;
      try {
        ms = parseDuration(o.expires);
      } catch (err) {
        throw new SwarmError('INVALID_INPUT', `--expires: ${(err as Error).message}`);
      }
      const root = await readSigningKey(o.root);
      let pub: ReturnType<typeof publicKeyFrom>;
      try {
        pub = publicKeyFrom(await readText(o.key, 'public key'), `public key ${o.key}`);
      } catch (err) {
        if (err instanceof SwarmError) throw err;
        throw new SwarmError('INVALID_INPUT', (err as Error).message, 'it is the .pub file swarm keys generate wrote');
      }
      const notAfter = new Date(Date.now() + ms);
      const d = createDelegation(root, { tenant: o.tenant, publicKey: pub, notAfter });
      await writeNew(o.output, `${JSON.stringify(d, null, 2)}\n`, 0o644);
      cli.output({ file: path.resolve(o.output), tenant: o.tenant, keyId: keyId(pub), notAfter: notAfter.toISOString() }, (v) =>
        cli.print(`wrote ${o.output}: key ${v.keyId} for ${v.tenant} until ${v.notAfter}`),
      );
    });

  program
    .command('sign')
    .description('sign an already pushed version with a tenant key: its bundle is downloaded and hashed here first')
    .argument(...WORKFLOW)
    .argument('<version>', 'version number', asVersion('version'))
    .addOption(new Option('--key <file>', 'the tenant key (<name>.key)').env('SWARM_SIGNING_KEY').makeOptionMandatory())
    .action(async (workflow: string, version: number, o: { key: string }) => {
      const ref = splitWorkflowRef(workflow);
      const key = await readSigningKey(o.key);
      const c = cli.client();
      const versions = await c.call(() => c.trpc.workflows.versions.query({ workflow }));
      const v = versions.find((x) => x.version === version);
      if (!v) throw new SwarmError('NOT_FOUND', `version ${version} of ${workflow} not found`, `list them: swarm versions ${workflow}`);
      // What is signed is what this machine downloaded and hashed, not what the registry says.
      const bundle = await c.call(() => c.trpc.bundles.get.query({ hash: v.bundleHash }));
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-sign-'));
      try {
        const file = path.join(dir, 'bundle.tar.gz');
        const res = await fetch(bundle.url);
        if (!res.ok || !res.body) throw new SwarmError('HTTP_ERROR', `downloading the bundle failed: HTTP ${res.status}`);
        await fs.writeFile(file, Buffer.from(await res.arrayBuffer()));
        const digests = await bundleDigests(file);
        if (digests.hash !== v.bundleHash) {
          throw new SwarmError(
            'HASH_MISMATCH',
            `the downloaded bundle's sha256 is ${digests.hash}, the registry says ${v.bundleHash}: not signed`,
          );
        }
        const s = signStatement(key, { ...ref, bundleHash: digests.hash, treeDigest: digests.treeDigest });
        const signed = await c.call(() => c.trpc.keys.sign.mutate({ workflow, version, ...s }));
        cli.output(signed, (x) =>
          cli.print(`signed version ${x.version} of ${workflow} (sha256:${x.bundleHash.slice(0, 12)}) with key ${s.keyId}`),
        );
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    });

  program
    .command('policy')
    .description("a tenant's signature policy: off, warn (allowed, recorded) or enforce (refused) for unsigned releases")
    .argument('<tenant>', 'tenant slug', asTenant('tenant'))
    .addOption(new Option('--signatures <policy>', 'set it (admin)').choices(['off', 'warn', 'enforce']))
    .action(async (tenant: string, o: { signatures?: SignaturePolicy }) => {
      const c = cli.client();
      const r = o.signatures
        ? await c.call(() => c.trpc.keys.setPolicy.mutate({ tenant, signatures: o.signatures! }))
        : await c.call(() => c.trpc.keys.policy.query({ tenant }));
      cli.output(r, (v) => cli.print(`${v.tenant}: signatures ${v.signatures}`));
    });
}
