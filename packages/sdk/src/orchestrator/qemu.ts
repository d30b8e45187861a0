/**
 * The `qemu` VM driver: boots the image built by `scripts/vm/build-image.sh` (a Debian
 * cloud kernel and an initramfs whose /init runs the boot agent once, prints
 * `SWARM_EXIT=<code>` on the serial console and powers off) and reports the workflow's
 * exit code, the console and where the time went.
 *
 * Network: user-mode networking with `restrict=on` on the link-local net
 * 169.254.169.0/24. The guest (169.254.169.15) reaches nothing but explicit forwards to
 * ports on 127.0.0.1: the metadata service at 169.254.169.254:80 and whatever the caller
 * adds (e.g. the registry API or the object store as 169.254.169.20:<port>). No DNS, no
 * route out, no IPv6.
 *
 * Acceleration (`accel`, or SWARM_QEMU_ACCEL): `'auto'` (the default) uses KVM only when
 * /dev/kvm is usable AND a probe boot (`swarm.probe=1`: /init powers off at once)
 * finishes within 10 s, once per process — nested KVM guests have been seen to hang
 * during boot — and TCG (software emulation) otherwise; `'kvm'` and `'tcg'` force one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** A guest address:port forwarded to a port on the host's loopback (never anywhere else). */
export type GuestForward = {
  /** In 169.254.169.0/24; default 169.254.169.20. */
  guestAddress?: string;
  guestPort: number;
  /** The port on 127.0.0.1. */
  hostPort: number;
};

export type QemuAccel = 'tcg' | 'kvm' | 'auto';

/**
 * How a forward reaches the host. `exec` (the default) starts `busybox nc 127.0.0.1 <port>`
 * for every guest connection, so each guest connection is its own host connection.
 * `chardev` uses QEMU's `tcp:127.0.0.1:<port>` character device: ONE host connection,
 * opened when QEMU starts (the port must already listen), shared by every guest
 * connection to that address — enough for one request or one keep-alive connection.
 */
export type ForwardMode = 'exec' | 'chardev';

export type QemuVmOptions = {
  /** Directory with `vmlinuz` and `initramfs.cpio` (default: `.swarm/vm` under the working directory). */
  imageDir?: string;
  kernel?: string;
  initrd?: string;
  /** Port of the MMDS V2 metadata service on 127.0.0.1 (`startMetadataService`); reached as 169.254.169.254:80. */
  metadataPort: number;
  forwards?: GuestForward[];
  forwardMode?: ForwardMode;
  /**
   * An ext4 image (see `createCacheDrive`), attached as virtio-blk and mounted at
   * /var/cache/swarm. One VM at a time: QEMU locks the file, a second VM fails to start.
   */
  cacheDrive?: string;
  memoryMiB?: number;
  cpus?: number;
  accel?: QemuAccel;
  /** Hard limit for the whole boot: QEMU is killed and the promise rejects (default 180 s). */
  timeoutMs?: number;
  /** After SWARM_EXIT is printed, how long QEMU may take to power off before it is killed (default 15 s). */
  exitGraceMs?: number;
  /** Settings for /init, passed on the kernel command line as `swarm.<name>=<value>` (no spaces). */
  settings?: Record<string, string>;
  /** Extra kernel command line arguments. */
  kernelArgs?: string[];
  /** Each console line, as it arrives (without the trailing CR/LF). */
  onLine?: (line: string) => void;
  qemuBinary?: string;
  /** For `forwardMode: 'exec'`: the busybox binary on the host (default /bin/busybox). */
  busybox?: string;
  signal?: AbortSignal;
};

export type QemuVmTimings = {
  /** QEMU start → first console byte. */
  firstOutputMs?: number;
  /** QEMU start → /init's first line. */
  bootToInitMs?: number;
  /** The guest kernel's uptime when /init started (seconds → ms). */
  guestUptimeAtInitMs?: number;
  /** QEMU start → /init hands over to boot.sh (modules, network, cache drive done). */
  agentStartMs?: number;
  /** QEMU start → the agent's "unpacked" line: the workflow starts right after. */
  unpackedMs?: number;
  /** QEMU start → the SWARM_EXIT line. */
  exitMarkerMs?: number;
  /** SWARM_EXIT line → QEMU gone. */
  shutdownMs?: number;
};

export type QemuVmResult = {
  /** boot.sh's exit code: the workflow's own, or the boot agent's (64–70) when it failed first. */
  exitCode: number;
  /** The serial console (capped at the last 4 MiB). */
  console: string;
  durationMs: number;
  accel: 'tcg' | 'kvm';
  timings: QemuVmTimings;
  /** The QEMU command line, for the record. */
  command: string[];
};

export class QemuVmError extends Error {
  constructor(
    message: string,
    readonly console: string,
    readonly durationMs: number,
  ) {
    super(message);
    this.name = 'QemuVmError';
  }
}

const NET = '169.254.169';
const MMDS_ADDRESS = `${NET}.254`;
/** Addresses slirp or the guest already use: network, host (.2), DNS (.3), guest (.15), broadcast. */
const RESERVED = new Set([0, 2, 3, 15, 255]);
const CONSOLE_CAP = 4 * 1024 * 1024;
const EXIT_MARKER = /^SWARM_EXIT=(\d+)$/;

function checkPort(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 1 || n > 65_535) throw new TypeError(`${what}: not a TCP port: ${n}`);
}

/** `guestfwd=` entries; every one ends on 127.0.0.1. */
export function guestForwards(metadataPort: number, forwards: GuestForward[], mode: ForwardMode, busybox = '/bin/busybox'): string[] {
  checkPort(metadataPort, 'metadataPort');
  const target = (port: number) => (mode === 'exec' ? `cmd:${busybox} nc 127.0.0.1 ${port}` : `tcp:127.0.0.1:${port}`);
  const seen = new Set<string>([`${MMDS_ADDRESS}:80`]);
  const entries = [`guestfwd=tcp:${MMDS_ADDRESS}:80-${target(metadataPort)}`];
  for (const f of forwards) {
    const address = f.guestAddress ?? `${NET}.20`;
    const m = /^169\.254\.169\.(\d{1,3})$/.exec(address);
    const host = m ? Number(m[1]) : NaN;
    if (!(host >= 0 && host <= 255) || RESERVED.has(host)) {
      throw new TypeError(`guest forward address ${address}: must be in ${NET}.0/24 and not .0, .2, .3, .15 or .255`);
    }
    checkPort(f.guestPort, `forward ${address}`);
    checkPort(f.hostPort, `forward ${address}:${f.guestPort}`);
    const key = `${address}:${f.guestPort}`;
    if (seen.has(key)) throw new TypeError(`guest forward ${key} given twice (or it is the metadata service's)`);
    seen.add(key);
    entries.push(`guestfwd=tcp:${key}-${target(f.hostPort)}`);
  }
  return entries;
}

/** Creates an empty ext4 image for the bundle cache (`mkfs.ext4 -d` of a directory holding `bundles/`). */
export async function createCacheDrive(file: string, sizeMiB = 256): Promise<void> {
  if (!Number.isInteger(sizeMiB) || sizeMiB < 8) throw new TypeError(`cache drive size: at least 8 MiB, not ${sizeMiB}`);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-cache-drive-'));
  try {
    await fs.mkdir(path.join(dir, 'bundles'));
    await run('mkfs.ext4', ['-q', '-F', '-L', 'swarm-cache', '-E', 'root_owner=0:0', '-d', dir, file, `${sizeMiB}M`], 60_000);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} failed (${signal ?? `exit ${code}`}): ${err.trim()}`)),
    );
  });
}

let kvmProbe: Promise<boolean> | undefined;

async function kvmUsable(opts: { kernel: string; initrd: string; qemu: string }): Promise<boolean> {
  try {
    await fs.access('/dev/kvm', fsConstants.R_OK | fsConstants.W_OK);
  } catch {
    return false;
  }
  const args = [
    ...baseArgs('kvm', 256, 1),
    '-kernel', opts.kernel, '-initrd', opts.initrd,
    '-append', 'console=ttyS0 panic=-1 quiet swarm.probe=1',
  ];
  const outcome = await launch(opts.qemu, args, { timeoutMs: 10_000, exitGraceMs: 5_000 }).catch(() => null);
  return outcome?.exitCode === 0;
}

function baseArgs(accel: 'tcg' | 'kvm', memoryMiB: number, cpus: number): string[] {
  return [
    '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-serial', 'stdio',
    '-no-reboot',
    '-machine', `pc,accel=${accel}`,
    '-cpu', accel === 'kvm' ? 'host' : 'max',
    '-m', String(memoryMiB),
    '-smp', String(cpus),
  ];
}

export async function bootQemuVm(opts: QemuVmOptions): Promise<QemuVmResult> {
  const imageDir = path.resolve(opts.imageDir ?? '.swarm/vm');
  const kernel = path.resolve(opts.kernel ?? path.join(imageDir, 'vmlinuz'));
  const initrd = path.resolve(opts.initrd ?? path.join(imageDir, 'initramfs.cpio'));
  for (const f of [kernel, initrd]) {
    await fs.access(f, fsConstants.R_OK).catch(() => {
      throw new Error(`VM image file ${f} is missing: run scripts/vm/build-image.sh`);
    });
  }
  const qemu = opts.qemuBinary ?? 'qemu-system-x86_64';
  const mode = opts.forwardMode ?? 'exec';
  const busybox = opts.busybox ?? '/bin/busybox';
  if (mode === 'exec') {
    await fs.access(busybox, fsConstants.X_OK).catch(() => {
      throw new Error(`forwardMode 'exec' needs ${busybox} (apt-get install busybox-static), or use forwardMode 'chardev'`);
    });
  }
  const requested = opts.accel ?? (process.env.SWARM_QEMU_ACCEL as QemuAccel | undefined) ?? 'auto';
  if (!['tcg', 'kvm', 'auto'].includes(requested)) throw new TypeError(`accel: tcg, kvm or auto, not "${requested}"`);
  const accel: 'tcg' | 'kvm' =
    requested === 'auto' ? ((await (kvmProbe ??= kvmUsable({ kernel, initrd, qemu }))) ? 'kvm' : 'tcg') : requested;

  const settings = Object.entries(opts.settings ?? {}).map(([k, v]) => {
    if (!/^[A-Za-z0-9_]+$/.test(k) || /[\s"]/.test(v)) throw new TypeError(`setting ${k}=${v}: names are [A-Za-z0-9_], values have no spaces or quotes`);
    return `swarm.${k}=${v}`;
  });
  const append = ['console=ttyS0', 'panic=-1', 'quiet', ...settings, ...(opts.kernelArgs ?? [])].join(' ');
  const netdev = ['user', 'id=n0', 'restrict=on', 'ipv6=off', `net=${NET}.0/24`, `host=${NET}.2`, ...guestForwards(opts.metadataPort, opts.forwards ?? [], mode, busybox)];
  if (netdev.some((p) => p.includes(','))) throw new TypeError('a forward contains a comma');
  const args = [
    ...baseArgs(accel, opts.memoryMiB ?? 512, opts.cpus ?? 1),
    '-kernel', kernel, '-initrd', initrd, '-append', append,
    '-netdev', netdev.join(','),
    '-device', 'virtio-net-pci,netdev=n0,romfile=',
  ];
  if (opts.cacheDrive) {
    const drive = path.resolve(opts.cacheDrive);
    await fs.access(drive, fsConstants.R_OK | fsConstants.W_OK);
    args.push('-drive', `file=${drive.replaceAll(',', ',,')},if=none,id=cache,format=raw`, '-device', 'virtio-blk-pci,drive=cache');
  }
  const outcome = await launch(qemu, args, {
    timeoutMs: opts.timeoutMs ?? 180_000,
    exitGraceMs: opts.exitGraceMs ?? 15_000,
    onLine: opts.onLine,
    signal: opts.signal,
  });
  if (outcome.exitCode === undefined) {
    throw new QemuVmError(
      `the VM ended without a SWARM_EXIT line (${outcome.qemuStatus}); console tail:\n${outcome.console.slice(-3000)}`,
      outcome.console,
      outcome.durationMs,
    );
  }
  return { exitCode: outcome.exitCode, console: outcome.console, durationMs: outcome.durationMs, accel, timings: outcome.timings, command: [qemu, ...args] };
}

type Outcome = { exitCode?: number; console: string; durationMs: number; timings: QemuVmTimings; qemuStatus: string };

/** Runs QEMU to its end (or kills it), reading the serial console on stdout. */
function launch(
  qemu: string,
  args: string[],
  o: { timeoutMs: number; exitGraceMs: number; onLine?: (line: string) => void; signal?: AbortSignal },
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const since = () => Math.round(performance.now() - started);
    const timings: QemuVmTimings = {};
    let consoleText = '';
    let partial = '';
    let exitCode: number | undefined;
    let failure: Error | undefined;
    let stderr = '';
    // Own process group, so killing it also ends the per-connection forwarders QEMU started.
    const child: ChildProcess = spawn(qemu, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const onProcessExit = () => kill();
    process.once('exit', onProcessExit);
    const fail = (err: Error) => {
      failure ??= err;
      kill();
    };
    const hardTimer = setTimeout(() => fail(new Error(`the VM did not finish within ${o.timeoutMs} ms; QEMU killed`)), o.timeoutMs);
    let graceTimer: NodeJS.Timeout | undefined;
    const onAbort = () => fail(new Error('aborted'));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) onAbort();

    const line = (text: string) => {
      if (text.startsWith('SWARM_INIT')) {
        timings.bootToInitMs ??= since();
        const up = /uptime=([\d.]+)/.exec(text);
        if (up) timings.guestUptimeAtInitMs = Math.round(Number(up[1]) * 1000);
      } else if (text === 'SWARM_AGENT_START') timings.agentStartMs ??= since();
      else if (text.startsWith('swarm-boot-agent: unpacked ')) timings.unpackedMs ??= since();
      const m = EXIT_MARKER.exec(text);
      if (m && exitCode === undefined) {
        exitCode = Number(m[1]);
        timings.exitMarkerMs = since();
        graceTimer = setTimeout(kill, o.exitGraceMs);
      }
      try {
        o.onLine?.(text);
      } catch {
        // a faulty listener must not take the VM down with it
      }
    };
    child.stdout!.on('data', (chunk: Buffer) => {
      timings.firstOutputMs ??= since();
      const text = chunk.toString('utf8');
      consoleText += text;
      if (consoleText.length > CONSOLE_CAP) consoleText = consoleText.slice(-CONSOLE_CAP);
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      if (partial.length > 65_536) {
        lines.push(partial);
        partial = '';
      }
      for (const l of lines) line(l.replace(/\r+$/, ''));
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8000)));
    child.stdin!.on('error', () => {}); // never written; QEMU may close it
    child.once('error', (err) => fail(err));
    child.once('close', (code, signal) => {
      clearTimeout(hardTimer);
      clearTimeout(graceTimer);
      o.signal?.removeEventListener('abort', onAbort);
      process.off('exit', onProcessExit);
      kill(); // stray forwarders, if any
      if (partial) line(partial.replace(/\r+$/, ''));
      const durationMs = since();
      if (timings.exitMarkerMs !== undefined) timings.shutdownMs = durationMs - timings.exitMarkerMs;
      const qemuStatus = signal ? `QEMU killed by ${signal}` : `QEMU exited with ${code}${stderr.trim() ? `: ${stderr.trim()}` : ''}`;
      if (failure && exitCode === undefined) {
        reject(new QemuVmError(`${failure.message} (${qemuStatus}); console tail:\n${consoleText.slice(-3000)}`, consoleText, durationMs));
        return;
      }
      resolve({ exitCode, console: consoleText, durationMs, timings, qemuStatus });
    });
  });
}
