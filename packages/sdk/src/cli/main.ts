#!/usr/bin/env node
/**
 * `swarm`: the registry's command line. Every command takes --json (one JSON document
 * on stdout, nothing else) and exits non-zero with a one-line error on failure.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { createSwarmClient, type SwarmClient } from '../client.js';
import { SwarmError, toSwarmError } from '../errors.js';
import { type ExecutionEvent, parseDuration, type ReleaseState, type VmMetadata } from '../contract/index.js';
import { runVm, type VmOptions, vmEndpoints } from '../orchestrator/spawn.js';
import { packBundle } from '../pack.js';
import { ALLOW_SECRET_FILES, registerBundleCommands } from './bundle-commands.js';
import { formatDoctorLines, runDoctor } from './doctor.js';
import { formatBytes, printTable } from './format.js';
import { createProgress } from './progress.js';

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
  .description('upload a bundle as a new version: a .tar.gz file as it is, or a directory packed as `swarm pack` does (honours .swarmignore, refuses secret files)')
  .requiredOption('-w, --workflow <tenant/name>', 'workflow to add the version to')
  .option('--activate', 'make the new version active')
  .option('-m, --message <msg>', 'what changed (kept in the version history)')
  .option(...ALLOW_SECRET_FILES)
  .action(async (source: string, o: { workflow: string; activate?: boolean; message?: string; allowSecretFiles?: boolean }) => {
    const c = client();
    const progress = await createProgress({ json: globals().json });
    const st = await fs.stat(source).catch(() => {
      throw new SwarmError('INVALID_INPUT', `${source} does not exist`);
    });
    let file = source;
    let tmpDir: string | undefined;
    let ok = false;
    try {
      if (st.isDirectory()) {
        tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-push-'));
        file = path.join(tmpDir, 'bundle.tar.gz');
        await packBundle(source, { out: file, allowSecretFiles: o.allowSecretFiles, onProgress: (p) => progress?.update(p) });
      }
      const result = await c.uploadBundle(file, {
        workflow: o.workflow,
        activate: o.activate,
        message: o.message,
        onProgress: (p) => progress?.update(p),
      });
      progress?.end();
      ok = true;
      const { uploaded, ...body } = result;
      output(body, (r) => {
        const what = r.created ? `pushed version ${r.version}` : `unchanged: version ${r.version} already has this bundle`;
        console.log(`${what} of ${o.workflow} (${formatBytes(r.size)}, sha256:${r.bundleHash.slice(0, 12)}${uploaded ? '' : ', already stored, nothing uploaded'})${r.active ? ' — active' : ''}`);
      });
    } finally {
      if (!ok) progress?.end(true);
      if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
    }
  });

registerBundleCommands(program, { json: () => !!globals().json, output });

program
  .command('versions <tenant/name>')
  .description("list a workflow's versions, newest first")
  .action(async (workflow: string) => {
    const c = client();
    output(await c.call(() => c.trpc.workflows.versions.query({ workflow })), (rows) =>
      printTable(rows, [
        ['VERSION', (v) => `${v.version}${v.active ? ' active' : v.canary ? ' canary' : v.prunedAt ? ' pruned' : ''}`],
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

const describeRelease = (r: ReleaseState) =>
  `${r.workflow}: active version ${r.activeVersion ?? 'none'}${r.canary ? `, canary version ${r.canary.version} at ${r.canary.weight}% of spawns` : ', no canary'}`;

program
  .command('rollback <tenant/name>')
  .description('make the previously active version active again (or the one named with --to)')
  .option('--to <version>', 'roll back to this version instead')
  .option('-m, --message <msg>', 'why (kept in the history)')
  .action(async (workflow: string, o: { to?: string; message?: string }) => {
    const c = client();
    const to = o.to === undefined ? undefined : parseVersion(o.to, '--to');
    output(await c.call(() => c.trpc.releases.rollback.mutate({ workflow, to, message: o.message })), (r) =>
      console.log(`rolled back ${describeRelease(r)}`),
    );
  });

program
  .command('canary <tenant/name> [version]')
  .description('send a share of spawns to another version (--weight), or end the canary (--clear)')
  .option('--weight <percent>', 'share of spawns that get the canary, 1–99')
  .option('--clear', 'end the canary: every spawn gets the active version')
  .option('-m, --message <msg>', 'why (kept in the history)')
  .action(async (workflow: string, version: string | undefined, o: { weight?: string; clear?: boolean; message?: string }) => {
    const c = client();
    if (o.clear) {
      if (version !== undefined || o.weight !== undefined) throw new SwarmError('INVALID_INPUT', '--clear takes no version or --weight');
      output(await c.call(() => c.trpc.releases.clearCanary.mutate({ workflow, message: o.message })), (r) => console.log(describeRelease(r)));
      return;
    }
    if (version === undefined || o.weight === undefined) {
      throw new SwarmError('INVALID_INPUT', 'a canary needs a version and --weight', `e.g. swarm canary ${workflow} 4 --weight 10, or --clear`);
    }
    if (!/^\d{1,2}$/.test(o.weight) || Number(o.weight) < 1) throw new SwarmError('INVALID_INPUT', `--weight must be a percentage from 1 to 99, not "${o.weight}"`);
    const input = { workflow, version: parseVersion(version, 'version'), weight: Number(o.weight), message: o.message };
    output(await c.call(() => c.trpc.releases.setCanary.mutate(input)), (r) => console.log(describeRelease(r)));
  });

program
  .command('promote <tenant/name>')
  .description('make the canary the active version')
  .option('-m, --message <msg>', 'why (kept in the history)')
  .action(async (workflow: string, o: { message?: string }) => {
    const c = client();
    output(await c.call(() => c.trpc.releases.promote.mutate({ workflow, message: o.message })), (r) => console.log(`promoted ${describeRelease(r)}`));
  });

program
  .command('history <tenant/name>')
  .description('every activation, rollback, promotion and canary change, newest first')
  .option('-n, --limit <n>', 'at most this many entries', '100')
  .action(async (workflow: string, o: { limit: string }) => {
    const c = client();
    const limit = parseCount(o.limit, '--limit');
    output(await c.call(() => c.trpc.releases.history.query({ workflow, limit })), (rows) =>
      printTable(rows, [
        ['WHEN', (h) => h.createdAt],
        ['WHAT', (h) => h.kind],
        ['FROM', (h) => (h.fromVersion === null ? '-' : String(h.fromVersion))],
        ['TO', (h) => (h.toVersion === null ? '-' : `${h.toVersion}${h.weight === null ? '' : ` (${h.weight}%)`}`)],
        ['BY', (h) => h.actor],
        ['MESSAGE', (h) => h.message ?? ''],
      ]),
    );
  });

program
  .command('diff <tenant/name> <from> <to>')
  .description("files added (+), removed (-) and changed (M) between two versions' bundles")
  .action(async (workflow: string, from: string, to: string) => {
    const c = client();
    const input = { workflow, from: parseVersion(from, 'from'), to: parseVersion(to, 'to') };
    output(await c.call(() => c.trpc.releases.diff.query(input)), (d) => {
      for (const f of d.added) console.log(`+ ${f.path} (${formatBytes(f.size)})`);
      for (const f of d.removed) console.log(`- ${f.path} (${formatBytes(f.size)})`);
      for (const f of d.changed) console.log(`M ${f.path} (${formatBytes(f.from.size)} → ${formatBytes(f.to.size)})`);
      console.log(`version ${d.fromVersion} → ${d.toVersion}: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed, ${d.unchanged} unchanged`);
    });
  });

program
  .command('gc')
  .description('retire old versions and delete bundles nothing uses any more (admin)')
  .option('--dry-run', 'only report what would be removed')
  .option('--keep <n>', 'keep the newest N versions of each workflow (active and canary are always kept)', '10')
  .option('--older-than <age>', 'only retire versions older than this: 30d, 12h, 90m, 45s', '0s')
  .action(async (o: { dryRun?: boolean; keep: string; olderThan: string }) => {
    const c = client();
    const olderThanSeconds = parseDuration(o.olderThan);
    if (olderThanSeconds === null) throw new SwarmError('INVALID_INPUT', `--older-than must be a duration like 30d, 12h, 90m or 45s, not "${o.olderThan}"`);
    const input = { dryRun: o.dryRun ?? false, keep: parseCount(o.keep, '--keep'), olderThanSeconds };
    output(await c.call(() => c.trpc.gc.run.mutate(input)), (r) => {
      const verb = r.dryRun ? 'would prune' : 'pruned';
      for (const v of r.prunedVersions) console.log(`${verb} ${v.workflow} version ${v.version}`);
      console.log(
        `${r.dryRun ? 'dry run: ' : ''}${r.prunedVersions.length} versions ${verb}, ${r.deletedBundles} bundles and ${r.orphanObjects} orphaned objects ${r.dryRun ? 'would be ' : ''}deleted, ` +
          `${r.sweptUploads} interrupted uploads swept, ${formatBytes(r.bytesFreed)} ${r.dryRun ? 'would be ' : ''}freed` +
          (r.keptForGrace ? `; ${r.keptForGrace} kept as younger than the grace period` : ''),
      );
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

/** The boot agent the `process` driver runs: --agent, SWARM_BOOT_AGENT, or the workspace's build. */
async function findAgent(given: string | undefined): Promise<string> {
  const candidates = given ? [given] : process.env.SWARM_BOOT_AGENT ? [process.env.SWARM_BOOT_AGENT] : [
    fileURLToPath(new URL('../../../boot-agent/dist/boot-agent.mjs', import.meta.url)),
    fileURLToPath(new URL('../../boot-agent/dist/boot-agent.mjs', import.meta.url)),
  ];
  for (const c of candidates) if (await fs.access(c).then(() => true, () => false)) return c;
  throw new SwarmError('INVALID_INPUT', `boot agent not found (${candidates.join(', ')})`, 'build it with `pnpm --filter @swarm/boot-agent build`, or pass --agent / SWARM_BOOT_AGENT');
}

const collect = (value: string, previous: string[]) => [...previous, value];

function parseSecrets(pairs: string[]): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new SwarmError('INVALID_INPUT', '--secret takes KEY=VALUE');
    secrets[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return secrets;
}

program
  .command('spawn <tenant/name>')
  .description('run the active version (or, at its weight, the canary) in a VM; prints the execution id')
  .addOption(new Option('--driver <driver>', 'how to run the VM').choices(['process', 'qemu']).default('process'))
  .option('--secret <KEY=VALUE>', 'a secret for the workflow, passed only through the VM metadata (repeatable)', collect, [])
  .option('--wait', "stream the workflow's output and exit with its exit code")
  .option('--routing-key <key>', 'with a canary: the same key always gets the same version')
  .option('--agent <path>', 'boot agent file for the process driver (default: SWARM_BOOT_AGENT, or the workspace build)')
  .option('--cache-dir <dir>', 'bundle cache to share between spawns (process driver)')
  .addOption(new Option('--store-url <url>', 'qemu: the S3 store as this host reaches it (unset with the fs store)').env('S3_ENDPOINT'))
  .option('--cache-drive <file>', 'qemu: ext4 cache drive image kept between boots (scripts/vm/make-cache-drive.sh)')
  .option('--image-dir <dir>', 'qemu: kernel and initramfs from scripts/vm/build-image.sh', '.swarm/vm')
  .action(async (workflow: string, o: { driver: 'process' | 'qemu'; secret: string[]; wait?: boolean; routingKey?: string; agent?: string; cacheDir?: string; storeUrl?: string; cacheDrive?: string; imageDir: string }) => {
    const c = client();
    const secrets = parseSecrets(o.secret);
    const { forwards, ...endpoints } = vmEndpoints(c.url, { driver: o.driver, storeUrl: o.storeUrl });
    const vm: VmOptions = {
      driver: o.driver,
      agentPath: o.driver === 'process' ? await findAgent(o.agent) : undefined,
      cacheDir: o.cacheDir,
      cacheDrive: o.cacheDrive,
      imageDir: o.imageDir,
      forwards,
    };
    const { execution, metadata } = await c.call(() => c.trpc.executions.spawn.mutate({ workflow, secrets, routingKey: o.routingKey, ...endpoints }));
    if (!o.wait) {
      // The VM outlives this command: a detached driver process gets the metadata (with
      // its secrets) through a pipe, never a file.
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, '__drive'], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
      child.stdin.end(JSON.stringify({ metadata, vm }));
      child.unref();
      output({ id: execution.id, status: execution.status, version: execution.version, versionReason: execution.versionReason }, (e) => console.log(e.id));
      return;
    }
    if (!globals().json) console.error(`execution ${execution.id} (version ${execution.version}, ${execution.versionReason})`);
    const exit = await runVm(metadata, { ...vm, onOutput: globals().json ? undefined : (line) => console.log(line) });
    const final = await c.call(() => c.trpc.executions.get.query({ id: execution.id }));
    output({ ...final, exitCode: exit.exitCode }, () => {});
    process.exitCode = exit.exitCode;
  });

program
  .command('__drive', { hidden: true })
  .description('internal: runs one VM from metadata on stdin (used by spawn without --wait)')
  .action(async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    const { metadata, vm } = JSON.parse(Buffer.concat(chunks).toString()) as { metadata: VmMetadata; vm: VmOptions };
    await runVm(metadata, vm);
  });

const executions = program.command('executions').description('inspect executions');
executions
  .command('list <tenant/name>')
  .description("a workflow's executions, newest first")
  .option('--limit <n>', 'how many', '20')
  .action(async (workflow: string, o: { limit: string }) => {
    const c = client();
    output(await c.call(() => c.trpc.executions.list.query({ workflow, limit: Number(o.limit) })), (rows) =>
      printTable(rows, [
        ['ID', (e) => e.id],
        ['VERSION', (e) => `${e.version}${e.versionReason === 'canary' ? ' canary' : ''}`],
        ['STATUS', (e) => e.status],
        ['EXIT', (e) => (e.exitCode === null ? '-' : String(e.exitCode))],
        ['CREATED', (e) => e.createdAt],
        ['REASON', (e) => e.failureReason ?? ''],
      ]),
    );
  });
executions
  .command('show <id>')
  .description('one execution')
  .action(async (id: string) => {
    const c = client();
    output(await c.call(() => c.trpc.executions.get.query({ id })), (e) => {
      for (const [k, v] of Object.entries(e)) console.log(`${k.padEnd(14)} ${v ?? '-'}`);
    });
  });

const formatEvent = (e: ExecutionEvent) => `${e.createdAt}  #${e.seq} ${e.type}${Object.keys(e.data).length ? ` ${JSON.stringify(e.data)}` : ''}`;

program
  .command('logs <execution-id>')
  .description("an execution's events; -f follows them until it finishes")
  .option('-f, --follow', 'keep streaming new events')
  .action(async (id: string, o: { follow?: boolean }) => {
    const c = client();
    if (!o.follow) {
      output(await c.call(() => c.trpc.executions.events.query({ id })), (events) => events.forEach((e) => console.log(formatEvent(e))));
      return;
    }
    const seen: ExecutionEvent[] = [];
    await c.watchExecution(id, (e) => {
      seen.push(e);
      if (!globals().json) console.log(formatEvent(e));
    });
    if (globals().json) output(seen, () => {});
  });

program
  .command('doctor')
  .description("check the registry's database, migrations, object store, download path and clocks (admin); exits 1 if a check fails")
  .action(async () => {
    const report = await runDoctor(client());
    output(report, (r) => formatDoctorLines(r.checks).forEach((line) => console.log(line)));
    if (!report.ok) process.exitCode = 1;
  });

function splitRef(ref: string): [string, string] {
  const m = /^([^/]+)\/([^/]+)$/.exec(ref);
  if (!m) throw new SwarmError('INVALID_INPUT', `"${ref}" is not of the form tenant/name`);
  return [m[1]!, m[2]!];
}

function parseCount(s: string, what: string): number {
  if (!/^[1-9]\d{0,5}$/.test(s)) throw new SwarmError('INVALID_INPUT', `${what} must be a positive whole number, not "${s}"`);
  return Number(s);
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
