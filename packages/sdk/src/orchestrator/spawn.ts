/**
 * The orchestrator's side of a run: ask the registry for an execution (it picks the
 * active version and mints the agent token), serve the VM its metadata over MMDS, start
 * it through a driver, and wait for it to exit.
 *
 * Drivers: `process` runs the boot agent as a child process with its own cache and
 * workflow directories (no VM: fast, for development and most tests); `qemu` boots a
 * real microVM (see qemu/index.ts).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { SwarmClient } from '../client.js';
import type { Execution, VmMetadata } from '../contract/index.js';
import { SwarmError } from '../errors.js';
import { startMetadataService } from './mmds.js';
import { type GuestForward, type QemuVmResult, bootQemuVm } from './qemu/index.js';

export type Driver = 'process' | 'qemu';

export type SpawnOptions = {
  driver?: Driver;
  secrets?: Record<string, string>;
  runtime?: { command: string[] };
  /** The boot agent file (dist/boot-agent.mjs); default SWARM_BOOT_AGENT. */
  agentPath?: string;
  /** Bundle cache shared across spawns (process driver); default: a fresh directory per spawn. */
  cacheDir?: string;
  /** Each line the VM prints (console or stdout/stderr). */
  onOutput?: (line: string) => void;
  /** Called once the registry has created the execution. */
  onSpawned?: (execution: Execution) => void;
  /** The VM is killed after this long. */
  timeoutMs?: number;
  /** The registry's per-spawn limits (#16): the workflow's timeout, counted from its start, and its output budget. */
  control?: { timeoutSeconds?: number; outputMaxBytes?: number };
  /** Extra environment for the process driver's agent (e.g. fetch limits). */
  agentEnv?: Record<string, string>;
  /**
   * process driver: the platform root's public key (SPKI PEM file) the agent checks bundle
   * signatures under (SWARM_TRUST_ROOT; docs/signing.md). A qemu VM has its root in its image.
   */
  trustRoot?: string;
  /**
   * process driver run as root: the user the agent runs the workflow as (default `nobody`,
   * which every Linux has; the VM image has its own `swarm` user).
   */
  runtimeUser?: string;
  /** qemu: the object store as this host reaches it (S3_ENDPOINT); unset with the registry's fs store. */
  storeUrl?: string;
  /** qemu: an ext4 cache drive (createCacheDrive) mounted at /var/cache/swarm, for cache hits across boots. */
  cacheDrive?: string;
  /** qemu: directory with vmlinuz and initramfs.cpio (scripts/vm/build-image.sh; default .swarm/vm). */
  imageDir?: string;
  /** qemu: measured boot timings of the VM. */
  onTimings?: (timings: QemuVmResult['timings']) => void;
};

/** Where a qemu guest reaches the registry and the store: link-local addresses forwarded to loopback. */
const GUEST_API_ADDRESS = '169.254.169.21';
const GUEST_STORE_ADDRESS = '169.254.169.20';

const portOf = (u: URL) => Number(u.port || (u.protocol === 'https:' ? 443 : 80));

export type SpawnOutcome = {
  executionId: string;
  /** The VM's (the workflow's, or the agent's failure) exit code. */
  exitCode: number;
  output: string;
  durationMs: number;
};

export type VmOptions = Pick<
  SpawnOptions,
  | 'driver'
  | 'agentPath'
  | 'cacheDir'
  | 'onOutput'
  | 'timeoutMs'
  | 'agentEnv'
  | 'runtimeUser'
  | 'cacheDrive'
  | 'imageDir'
  | 'onTimings'
  | 'trustRoot'
> & {
  /** qemu: guest ports forwarded to host loopback ports (the API and the store, as spawn addressed them). */
  forwards?: GuestForward[];
};

/**
 * The endpoints a VM uses, for executions.spawn: the process driver runs on the host and
 * uses the host's addresses; a qemu guest reaches the API and the store through
 * link-local addresses forwarded to loopback, and its bundle URL must be signed for them.
 */
export function vmEndpoints(
  registryUrl: string,
  opts: Pick<SpawnOptions, 'driver' | 'storeUrl'>,
): { apiUrl?: string; storeEndpoint?: string; forwards: GuestForward[] } {
  if ((opts.driver ?? 'process') === 'process') return { forwards: [] };
  const api = new URL(registryUrl);
  const forwards: GuestForward[] = [{ guestAddress: GUEST_API_ADDRESS, guestPort: portOf(api), hostPort: portOf(api) }];
  const apiUrl = `http://${GUEST_API_ADDRESS}:${portOf(api)}`;
  if (!opts.storeUrl) return { apiUrl, storeEndpoint: apiUrl, forwards };
  const store = new URL(opts.storeUrl);
  forwards.push({ guestAddress: GUEST_STORE_ADDRESS, guestPort: portOf(store), hostPort: portOf(store) });
  return { apiUrl, storeEndpoint: `http://${GUEST_STORE_ADDRESS}:${portOf(store)}`, forwards };
}

/** Boots one VM for an execution's metadata document and waits for it to exit. */
export async function runVm(metadata: VmMetadata, opts: VmOptions = {}): Promise<{ exitCode: number; output: string }> {
  const driver = opts.driver ?? 'process';
  if (driver === 'qemu' && opts.trustRoot) {
    throw new SwarmError(
      'INVALID_INPUT',
      'a qemu VM takes its trust root from its image, not from the orchestrator',
      'build the image with it: scripts/vm/build-image.sh --trust-root root.pub',
    );
  }
  if (driver === 'qemu') {
    const mmds = await startMetadataService(metadata, { once: true });
    try {
      const vm = await bootQemuVm({
        imageDir: opts.imageDir,
        metadataPort: mmds.port,
        forwards: opts.forwards ?? [],
        cacheDrive: opts.cacheDrive,
        timeoutMs: opts.timeoutMs,
        onLine: opts.onOutput,
      });
      opts.onTimings?.(vm.timings);
      return { exitCode: vm.exitCode, output: vm.console };
    } finally {
      await mmds.close();
    }
  }
  const agentPath = opts.agentPath ?? process.env.SWARM_BOOT_AGENT;
  if (!agentPath)
    throw new SwarmError(
      'INVALID_INPUT',
      'no boot agent',
      'build it (pnpm --filter @swarm/boot-agent build) and set SWARM_BOOT_AGENT to its dist/boot-agent.mjs',
    );
  await fs.access(agentPath).catch(() => {
    throw new SwarmError('INVALID_INPUT', `boot agent not found at ${agentPath}`, 'build it: pnpm --filter @swarm/boot-agent build');
  });
  const work = await fs.mkdtemp(path.join(os.tmpdir(), `swarm-vm-${metadata.execution?.id.slice(0, 8) ?? 'run'}-`));
  try {
    // The runtime user must reach the workflow directory inside (not list it).
    await fs.chmod(work, 0o711);
    const exit = await runProcessVm(metadata, agentPath, {
      cacheDir: opts.cacheDir ?? path.join(work, 'cache'),
      workflowDir: path.join(work, 'workflow'),
      timeoutMs: opts.timeoutMs ?? 10 * 60_000,
      onOutput: opts.onOutput,
      env: {
        ...(process.getuid?.() === 0 ? { SWARM_RUNTIME_USER: opts.runtimeUser ?? 'nobody' } : {}),
        ...opts.agentEnv,
        ...(opts.trustRoot ? { SWARM_TRUST_ROOT: path.resolve(opts.trustRoot) } : {}),
      },
    });
    return { exitCode: exit.code, output: exit.output };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/**
 * The metadata a VM gets. From the registry's answer only what the registry alone knows:
 * the bundle (URL, hash), its signature material, the execution's credential and the API
 * URL. What runs and with what — the runtime command, the secrets — and the workflow to
 * check the signed statement against (`expectedWorkflow`) come from the orchestrator's own
 * request, never from the answer: a compromised registry cannot add a command or a secret
 * (NODE_OPTIONS, …) to a genuinely signed bundle, nor name another tenant's workflow.
 * Asked by id, no workflow is written (nor the registry's kept): a VM with a trust root
 * then refuses to run (docs/signing.md).
 */
export function withExpectedWorkflow(
  metadata: VmMetadata,
  workflow: string,
  request: Pick<SpawnOptions, 'secrets' | 'runtime'>,
): VmMetadata {
  const ref = workflow.includes('/') ? workflow : undefined;
  return {
    bundle: metadata.bundle,
    signing: metadata.signing,
    execution: metadata.execution,
    apiUrl: metadata.apiUrl,
    workflow: metadata.bundle ? undefined : ref,
    expectedWorkflow: ref,
    runtime: request.runtime,
    secrets: { ...request.secrets },
  };
}

/** Spawns an execution of the workflow's active version and runs it to the end. */
export async function spawnWorkflow(client: SwarmClient, workflow: string, opts: SpawnOptions = {}): Promise<SpawnOutcome> {
  const started = Date.now();
  const { forwards, ...endpoints } = vmEndpoints(client.url, opts);
  const { execution, metadata } = await client.call(() =>
    client.trpc.executions.spawn.mutate({ workflow, secrets: opts.secrets ?? {}, runtime: opts.runtime, ...endpoints, ...opts.control }),
  );
  opts.onSpawned?.(execution);
  const exit = await runVm(withExpectedWorkflow(metadata, workflow, opts), { ...opts, forwards });
  return { executionId: execution.id, exitCode: exit.exitCode, output: exit.output, durationMs: Date.now() - started };
}

export type SpawnManyOptions = Omit<SpawnOptions, 'onSpawned' | 'onOutput'> & {
  /** How many executions alike (1–1,000); or give `items`. */
  count?: number;
  /** One execution per item, each with its own routing key and secrets/runtime over the shared ones. */
  items?: { routingKey?: string; secrets?: Record<string, string>; runtime?: { command: string[] } }[];
  /** Called once the registry has created the executions (in one call, executions.spawnMany). */
  onSpawned?: (executions: Execution[]) => void;
  /** Each line a VM prints, with the index of its execution. */
  onOutput?: (index: number, line: string) => void;
};

/**
 * Fan-out: N executions of the workflow's active version (or canary, per item) created in
 * ONE registry call (executions.spawnMany), then every VM run side by side to its end.
 * The outcomes are in the order of the executions.
 */
export async function spawnWorkflows(client: SwarmClient, workflow: string, opts: SpawnManyOptions): Promise<SpawnOutcome[]> {
  const started = Date.now();
  const { forwards, ...endpoints } = vmEndpoints(client.url, opts);
  const { spawned } = await client.call(() =>
    client.trpc.executions.spawnMany.mutate({
      workflow,
      ...(opts.items ? { items: opts.items } : { count: opts.count ?? 1 }),
      secrets: opts.secrets ?? {},
      runtime: opts.runtime,
      ...endpoints,
      ...opts.control,
    }),
  );
  opts.onSpawned?.(spawned.map((s) => s.execution));
  return Promise.all(
    spawned.map(async ({ execution, metadata }, i) => {
      const onOutput = opts.onOutput ? (line: string) => opts.onOutput!(i, line) : undefined;
      // What this item asked for, as the registry applies it: its secrets over the shared ones, its runtime instead.
      const item = opts.items?.[i];
      const asked = { secrets: { ...opts.secrets, ...item?.secrets }, runtime: item?.runtime ?? opts.runtime };
      const exit = await runVm(withExpectedWorkflow(metadata, workflow, asked), { ...opts, onOutput, forwards });
      return { executionId: execution.id, exitCode: exit.exitCode, output: exit.output, durationMs: Date.now() - started };
    }),
  );
}

/**
 * The `process` driver: the boot agent as a child process, reading its metadata over MMDS
 * like in a VM; the metadata service answers once. An agent run as root runs the workflow
 * as the runtime user (see runtimeUser).
 */
async function runProcessVm(
  metadata: VmMetadata,
  agentPath: string,
  o: {
    cacheDir: string;
    workflowDir: string;
    timeoutMs: number;
    onOutput?: ((line: string) => void) | undefined;
    env: Record<string, string>;
  },
): Promise<{ code: number; output: string }> {
  const mmds = await startMetadataService(metadata, { once: true });
  try {
    return await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [agentPath], {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          SWARM_MMDS_URL: mmds.url,
          SWARM_CACHE_DIR: o.cacheDir,
          SWARM_WORKFLOW_DIR: o.workflowDir,
          ...o.env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      let partial = '';
      const onData = (chunk: Buffer) => {
        const text = chunk.toString();
        output += text;
        const lines = (partial + text).split('\n');
        partial = lines.pop()!;
        for (const line of lines) o.onOutput?.(line);
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (partial) o.onOutput?.(partial);
        resolve({ code: code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0), output });
      });
    });
  } finally {
    await mmds.close();
  }
}
