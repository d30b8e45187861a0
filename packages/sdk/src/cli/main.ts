#!/usr/bin/env node
/**
 * `swarm`: the registry's command line. Every command takes --json (one JSON document
 * on stdout, nothing else) and exits non-zero with a one-line error on failure.
 */
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Command, CommanderError, Option } from 'commander';
import { createSwarmClient, type SwarmClient } from '../client.js';
import { SwarmError, toSwarmError } from '../errors.js';
import { listBundleEntries, packDirectory } from '../pack.js';
import { formatBytes, printTable } from './format.js';

type GlobalOptions = { url: string; token?: string; json?: boolean };

const program = new Command('swarm')
  .description('Command line for the Swarm bundle registry')
  .addOption(new Option('--url <url>', 'registry URL').env('SWARM_URL').default('http://127.0.0.1:3000'))
  .addOption(new Option('--token <token>', 'API token').env('SWARM_TOKEN'))
  .option('--json', 'print one JSON document on stdout and nothing else')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

const globals = () => program.opts<GlobalOptions>();

function client(): SwarmClient {
  const { url, token } = globals();
  if (!token) throw new SwarmError('UNAUTHORIZED', 'no API token', 'set SWARM_TOKEN or pass --token (the registry prints its admin token at first start)');
  return createSwarmClient({ url, token });
}

/** Prints `value` as JSON with --json, else the human rendering. */
function output<T>(value: T, human: (v: T) => void): void {
  if (globals().json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else human(value);
}

/** Progress on stderr, only for a person at a terminal. */
function progress(): ((line: string) => void) | undefined {
  if (globals().json || !process.stderr.isTTY) return undefined;
  let last = 0;
  return (line: string) => {
    const now = Date.now();
    if (now - last < 100) return;
    last = now;
    process.stderr.write(`\r\x1b[K${line}`);
  };
}

const tenants = program.command('tenants').description('manage tenants');
tenants
  .command('create <slug>')
  .description('create a tenant (admin)')
  .action(async (slug: string) => {
    const c = client();
    output(await c.call(() => c.trpc.tenants.create.mutate({ slug })), (t) => console.log(`created tenant ${t.slug} (${t.id})`));
  });
tenants
  .command('list')
  .description('list tenants')
  .action(async () => {
    const c = client();
    output(await c.call(() => c.trpc.tenants.list.query()), (rows) =>
      printTable(rows, [['SLUG', (t) => t.slug], ['ID', (t) => t.id], ['CREATED', (t) => t.createdAt]]),
    );
  });

const workflows = program.command('workflows').description('manage workflows');
workflows
  .command('create <tenant/name>')
  .description('create a workflow')
  .action(async (ref: string) => {
    const [tenant, name] = splitRef(ref);
    const c = client();
    output(await c.call(() => c.trpc.workflows.create.mutate({ tenant, name })), (w) =>
      console.log(`created workflow ${w.tenant}/${w.name} (${w.id})`),
    );
  });
workflows
  .command('list <tenant>')
  .description("list a tenant's workflows")
  .action(async (tenant: string) => {
    const c = client();
    output(await c.call(() => c.trpc.workflows.list.query({ tenant })), (rows) =>
      printTable(rows, [['NAME', (w) => `${w.tenant}/${w.name}`], ['ACTIVE', (w) => (w.activeVersion === null ? '-' : String(w.activeVersion))], ['ID', (w) => w.id]]),
    );
  });

program
  .command('push <path>')
  .description('upload a bundle (a .tar.gz file, or a directory packed on the fly) as a new version')
  .requiredOption('-w, --workflow <tenant/name>', 'workflow to add the version to')
  .option('--activate', 'make the new version active')
  .option('-m, --message <msg>', 'what changed (kept in the version history)')
  .action(async (source: string, o: { workflow: string; activate?: boolean; message?: string }) => {
    const c = client();
    const show = progress();
    const st = await fs.stat(source).catch(() => {
      throw new SwarmError('INVALID_INPUT', `${source} does not exist`);
    });
    let file = source;
    let tmpDir: string | undefined;
    try {
      if (st.isDirectory()) {
        tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-push-'));
        file = path.join(tmpDir, 'bundle.tar.gz');
        show?.(`packing ${source}…`);
        await pipeline(packDirectory(source, await listBundleEntries(source)), createWriteStream(file));
      }
      const result = await c.uploadBundle(file, {
        workflow: o.workflow,
        activate: o.activate,
        message: o.message,
        onProgress: show && ((p) => show(`${p.phase === 'hash' ? 'hashing' : 'uploading'} ${formatBytes(p.bytes)}${p.total ? ` / ${formatBytes(p.total)}` : ''}`)),
      });
      if (show) process.stderr.write('\r\x1b[K');
      const { uploaded, ...body } = result;
      output(body, (r) => {
        const what = r.created ? `pushed version ${r.version}` : `unchanged: version ${r.version} already has this bundle`;
        console.log(`${what} of ${o.workflow} (${formatBytes(r.size)}, sha256:${r.bundleHash.slice(0, 12)}${uploaded ? '' : ', already stored, nothing uploaded'})${r.active ? ' — active' : ''}`);
      });
    } finally {
      if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
    }
  });

program
  .command('versions <tenant/name>')
  .description("list a workflow's versions, newest first")
  .action(async (workflow: string) => {
    const c = client();
    output(await c.call(() => c.trpc.workflows.versions.query({ workflow })), (rows) =>
      printTable(rows, [
        ['VERSION', (v) => `${v.version}${v.active ? ' *' : ''}`],
        ['HASH', (v) => v.bundleHash.slice(0, 12)],
        ['SIZE', (v) => formatBytes(v.size)],
        ['CREATED', (v) => v.createdAt],
        ['BY', (v) => v.createdBy],
        ['MESSAGE', (v) => v.message ?? ''],
      ]),
    );
  });

program
  .command('activate <tenant/name> <version>')
  .description('make a version the active one')
  .option('--expect <version>', 'only if this is the active version now (compare-and-set; "none" for no active version)')
  .option('-m, --message <msg>', 'why (kept in the activation history)')
  .action(async (workflow: string, version: string, o: { expect?: string; message?: string }) => {
    const c = client();
    const expectedActiveVersion = o.expect === undefined ? undefined : o.expect === 'none' ? null : parseVersion(o.expect, '--expect');
    output(
      await c.call(() => c.trpc.versions.activate.mutate({ workflow, version: parseVersion(version, 'version'), expectedActiveVersion, message: o.message })),
      (v) => console.log(`version ${v.version} of ${workflow} is active (sha256:${v.bundleHash.slice(0, 12)})`),
    );
  });

program
  .command('active <tenant/name>')
  .description("show a workflow's active version and a download URL for its bundle")
  .action(async (workflow: string) => {
    const c = client();
    output(await c.resolveActive(workflow), (a) => {
      console.log(`version ${a.version} (${a.versionId})`);
      console.log(`bundle  sha256:${a.bundleHash} (${formatBytes(a.size)})`);
      console.log(`url     ${a.bundleUrl}`);
      console.log(`expires ${a.expiresAt}`);
    });
  });

const tokens = program.command('tokens').description('manage API tokens (admin)');
tokens
  .command('create')
  .description('mint a token; its value is shown this once')
  .requiredOption('--scope <scope>', 'admin, orchestrator, or tenant:<slug>')
  .option('--name <name>', 'a name to recognise it by')
  .action(async (o: { scope: string; name?: string }) => {
    const c = client();
    const scope = o.scope as 'admin';
    output(await c.call(() => c.trpc.tokens.create.mutate({ scope, name: o.name })), (t) => {
      console.log(`created token "${t.name}" (${t.id}) with scope ${t.scope}; it is shown only now:`);
      console.log(t.token);
    });
  });
tokens
  .command('list')
  .description('list tokens (never their values)')
  .action(async () => {
    const c = client();
    output(await c.call(() => c.trpc.tokens.list.query()), (rows) =>
      printTable(rows, [['ID', (t) => t.id], ['NAME', (t) => t.name], ['SCOPE', (t) => t.scope], ['REVOKED', (t) => t.revokedAt ?? '-']]),
    );
  });
tokens
  .command('revoke <id>')
  .description('revoke a token')
  .action(async (id: string) => {
    const c = client();
    output(await c.call(() => c.trpc.tokens.revoke.mutate({ id })), (t) => console.log(`revoked token "${t.name}" (${t.id})`));
  });

function splitRef(ref: string): [string, string] {
  const m = /^([^/]+)\/([^/]+)$/.exec(ref);
  if (!m) throw new SwarmError('INVALID_INPUT', `"${ref}" is not of the form tenant/name`);
  return [m[1]!, m[2]!];
}

function parseVersion(s: string, what: string): number {
  if (!/^[1-9]\d{0,9}$/.test(s)) throw new SwarmError('INVALID_INPUT', `${what} must be a version number (1, 2, …), not "${s}"`);
  return Number(s);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  const e = toSwarmError(err);
  process.stderr.write(`swarm: ${e.message}${e.hint ? ` (hint: ${e.hint})` : ''}\n`);
  process.exit(e.code === 'INVALID_INPUT' ? 2 : 1);
}
