/** `swarm spawn`: an execution of a workflow, run in a VM by one of the orchestrator's drivers. */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import { SPAWN_MANY_MAX, type VmMetadata } from '../../contract/index.js';
import { SwarmError } from '../../errors.js';
import { runVm, type VmOptions, vmEndpoints, withExpectedWorkflow } from '../../orchestrator/spawn.js';
import type { Cli } from '../context.js';
import { WORKFLOW, asCount, asDuration, asSpawnCount, valueOption } from '../options.js';
import { publicKeyFrom } from '../../signing/index.js';

/** The boot agent the `process` driver runs: --agent, SWARM_BOOT_AGENT, or the workspace's build. */
async function findAgent(given: string | undefined): Promise<string> {
  const candidates = given
    ? [given]
    : process.env.SWARM_BOOT_AGENT
      ? [process.env.SWARM_BOOT_AGENT]
      : [
          // From this file in the workspace (src/cli/commands/), and from the bundled dist/cli.js.
          fileURLToPath(new URL('../../../../boot-agent/dist/boot-agent.mjs', import.meta.url)),
          fileURLToPath(new URL('../../boot-agent/dist/boot-agent.mjs', import.meta.url)),
        ];
  for (const c of candidates)
    if (
      await fs.access(c).then(
        () => true,
        () => false,
      )
    )
      return c;
  throw new SwarmError(
    'INVALID_INPUT',
    `boot agent not found (${candidates.join(', ')})`,
    'build it with `pnpm --filter @swarm/boot-agent build`, or pass --agent / SWARM_BOOT_AGENT',
  );
}

const collect = (value: string, previous: string[]) => [...previous, value];

/**
 * The VM outlives this command: a detached driver process gets the metadata (with its
 * secrets) through a pipe, never a file.
 */
function detachVm(metadata: VmMetadata, vm: VmOptions): void {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, '__drive'], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  child.stdin.end(JSON.stringify({ metadata, vm }));
  child.unref();
}

function parseSecrets(pairs: string[]): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new SwarmError('INVALID_INPUT', '--secret takes KEY=VALUE');
    secrets[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return secrets;
}

/** Before anything is spawned: the process driver's trust root must be a readable public key. */
async function checkTrustRoot(file: string, driver: 'process' | 'qemu'): Promise<void> {
  if (driver === 'qemu') {
    throw new SwarmError(
      'INVALID_INPUT',
      '--trust-root is for the process driver: a qemu VM takes its root from its image',
      'build the image with it: scripts/vm/build-image.sh --trust-root root.pub',
    );
  }
  const pem = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new SwarmError('INVALID_INPUT', `cannot read the trust root ${file}: ${err.code ?? err.message}`);
  });
  try {
    publicKeyFrom(pem, `the trust root ${file}`);
  } catch (err) {
    throw new SwarmError('INVALID_INPUT', (err as Error).message, 'the root key is the .pub file swarm keys generate wrote');
  }
}

type SpawnCommandOptions = {
  driver: 'process' | 'qemu';
  count?: number;
  secret: string[];
  wait?: boolean;
  routingKey?: string;
  agent?: string;
  cacheDir?: string;
  storeUrl?: string;
  cacheDrive?: string;
  imageDir: string;
  trustRoot?: string;
  timeout?: number;
  outputMaxBytes?: number;
};

export function registerSpawnCommands(program: Command, cli: Cli): void {
  program
    .command('spawn')
    .description('run the active version (or, at its weight, the canary) in a VM; prints the execution id')
    .argument(...WORKFLOW)
    .addOption(new Option('--driver <driver>', 'how to run the VM').choices(['process', 'qemu']).default('process'))
    .option('--secret <KEY=VALUE>', 'a secret for the workflow, passed only through the VM metadata (repeatable)', collect, [])
    .addOption(
      valueOption('--count <n>', `run N executions, created in one call (executions.spawnMany), 1–${SPAWN_MANY_MAX}`, asSpawnCount, '1'),
    )
    .option('--wait', "stream the workflow's output and exit with its exit code (with --count: the first nonzero one)")
    .option('--routing-key <key>', 'with a canary: the same key always gets the same version')
    .addOption(
      valueOption('--timeout <duration>', "stop the workflow this long after it starts (default: the workflow's timeout)", asDuration),
    )
    .addOption(valueOption('--output-max-bytes <n>', 'bytes of output the registry keeps (default: SWARM_OUTPUT_MAX_BYTES)', asCount))
    .option('--agent <path>', 'boot agent file for the process driver (default: SWARM_BOOT_AGENT, or the workspace build)')
    .option('--cache-dir <dir>', 'bundle cache to share between spawns (process driver)')
    .addOption(new Option('--store-url <url>', 'qemu: the S3 store as this host reaches it (unset with the fs store)').env('S3_ENDPOINT'))
    .option('--cache-drive <file>', 'qemu: ext4 cache drive image kept between boots (scripts/vm/make-cache-drive.sh)')
    .option('--image-dir <dir>', 'qemu: kernel and initramfs from scripts/vm/build-image.sh', '.swarm/vm')
    .option(
      '--trust-root <file>',
      "process driver: the platform root's public key; the agent runs only bundles signed under it (docs/signing.md)",
    )
    .action(async (workflow: string, o: SpawnCommandOptions) => {
      const c = cli.client();
      const secrets = parseSecrets(o.secret);
      if (o.trustRoot) await checkTrustRoot(o.trustRoot, o.driver);
      const { forwards, ...endpoints } = vmEndpoints(c.url, { driver: o.driver, storeUrl: o.storeUrl });
      const vm: VmOptions = {
        driver: o.driver,
        agentPath: o.driver === 'process' ? await findAgent(o.agent) : undefined,
        cacheDir: o.cacheDir,
        cacheDrive: o.cacheDrive,
        imageDir: o.imageDir,
        forwards,
        trustRoot: o.trustRoot,
      };
      if (o.count !== undefined && o.count > 1) return spawnMany(c, workflow, { ...o, count: o.count }, { secrets, endpoints, vm });
      const spawned = await c.call(() =>
        c.trpc.executions.spawn.mutate({
          workflow,
          secrets,
          routingKey: o.routingKey,
          timeoutSeconds: o.timeout,
          outputMaxBytes: o.outputMaxBytes,
          ...endpoints,
        }),
      );
      const { execution } = spawned;
      const metadata = withExpectedWorkflow(spawned.metadata, workflow, { secrets });
      if (!o.wait) {
        detachVm(metadata, vm);
        cli.output(
          { id: execution.id, status: execution.status, version: execution.version, versionReason: execution.versionReason },
          (e) => cli.print(e.id),
        );
        return;
      }
      if (!cli.json()) cli.io.stderr.write(`execution ${execution.id} (version ${execution.version}, ${execution.versionReason})\n`);
      // The workflow's own console output, passed through as it is (colours included), as `docker run` does.
      const passThrough = (line: string) => void cli.io.stdout.write(`${line}\n`);
      const exit = await runVm(metadata, { ...vm, onOutput: cli.json() ? undefined : passThrough });
      const final = await c.call(() => c.trpc.executions.get.query({ id: execution.id }));
      cli.output({ ...final, exitCode: exit.exitCode }, () => {});
      cli.io.exitCode = exit.exitCode;
    });

  /** `--count N`: N executions from one executions.spawnMany call; their VMs run side by side. */
  async function spawnMany(
    c: ReturnType<Cli['client']>,
    workflow: string,
    o: SpawnCommandOptions & { count: number },
    s: { secrets: Record<string, string>; endpoints: { apiUrl?: string; storeEndpoint?: string }; vm: VmOptions },
  ): Promise<void> {
    const shape = o.routingKey ? { items: Array.from({ length: o.count }, () => ({ routingKey: o.routingKey })) } : { count: o.count };
    const { spawned } = await c.call(() =>
      c.trpc.executions.spawnMany.mutate({
        workflow,
        secrets: s.secrets,
        timeoutSeconds: o.timeout,
        outputMaxBytes: o.outputMaxBytes,
        ...shape,
        ...s.endpoints,
      }),
    );
    const summary = spawned.map(({ execution: e }) => ({ id: e.id, status: e.status, version: e.version, versionReason: e.versionReason }));
    if (!o.wait) {
      for (const { metadata } of spawned) detachVm(withExpectedWorkflow(metadata, workflow, { secrets: s.secrets }), s.vm);
      cli.output(summary, (list) => {
        for (const e of list) cli.print(e.id);
      });
      return;
    }
    if (!cli.json()) for (const e of summary) cli.io.stderr.write(`execution ${e.id} (version ${e.version}, ${e.versionReason})\n`);
    // Each line prefixed with its execution's short id: the outputs interleave.
    const exits = await Promise.all(
      spawned.map(({ execution, metadata }) => {
        const prefix = `[${execution.id.slice(0, 8)}] `;
        const onOutput = cli.json() ? undefined : (line: string) => void cli.io.stdout.write(`${prefix}${line}\n`);
        return runVm(withExpectedWorkflow(metadata, workflow, { secrets: s.secrets }), { ...s.vm, onOutput });
      }),
    );
    const finals = await Promise.all(spawned.map(({ execution }) => c.call(() => c.trpc.executions.get.query({ id: execution.id }))));
    cli.output(
      finals.map((f, i) => ({ ...f, exitCode: exits[i]!.exitCode })),
      () => {},
    );
    cli.io.exitCode = exits.find((e) => e.exitCode !== 0)?.exitCode ?? 0;
  }

  program
    .command('__drive', { hidden: true })
    .description('internal: runs one VM from metadata on stdin (used by spawn without --wait)')
    .action(async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      const { metadata, vm } = JSON.parse(Buffer.concat(chunks).toString()) as { metadata: VmMetadata; vm: VmOptions };
      await runVm(metadata, vm);
    });
}
