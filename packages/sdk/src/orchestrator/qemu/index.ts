/**
 * The `qemu` VM driver: boots the image built by `scripts/vm/build-image.sh` (a Debian
 * cloud kernel and an initramfs whose /init runs the boot agent once, writes
 * `SWARM_EXIT=<code>` on the exit channel, a second serial port the workload cannot open,
 * and powers off) and reports the workflow's exit code, the console and where the time went.
 *
 * args.ts builds the command line and the network (loopback forwards only), probe.ts
 * picks KVM or TCG (SWARM_QEMU_ACCEL), supervise.ts runs QEMU, console.ts reads what the
 * VM prints, drive.ts makes the cache drive.
 */
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { kernelCommandLine, qemuArgs } from './args.js';
import { chooseAccel } from './probe.js';
import { superviseQemu } from './supervise.js';
import { type QemuAccel, QemuVmError, type QemuVmOptions, type QemuVmResult } from './types.js';

export { createCacheDrive } from './drive.js';
export { guestForwards } from './args.js';
export * from './types.js';

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
  const forwardMode = opts.forwardMode ?? 'exec';
  const busybox = opts.busybox ?? '/bin/busybox';
  if (forwardMode === 'exec') {
    await fs.access(busybox, fsConstants.X_OK).catch(() => {
      throw new Error(`forwardMode 'exec' needs ${busybox} (apt-get install busybox-static), or use forwardMode 'chardev'`);
    });
  }
  const accel = await chooseAccel(opts.accel ?? (process.env.SWARM_QEMU_ACCEL as QemuAccel | undefined) ?? 'auto', {
    kernel,
    initrd,
    qemu,
  });
  const cacheDrive = opts.cacheDrive ? path.resolve(opts.cacheDrive) : undefined;
  const defaultRoot = path.join(imageDir, 'root.ext4');
  const rootDrive =
    opts.rootDrive === false
      ? undefined
      : opts.rootDrive
        ? path.resolve(opts.rootDrive)
        : await fs.access(defaultRoot, fsConstants.R_OK).then(
            () => defaultRoot,
            () => undefined,
          );
  const args = qemuArgs({
    accel,
    memoryMiB: opts.memoryMiB ?? 512,
    cpus: opts.cpus ?? 1,
    kernel,
    initrd,
    append: kernelCommandLine(opts.settings, opts.kernelArgs),
    metadataPort: opts.metadataPort,
    forwards: opts.forwards ?? [],
    forwardMode,
    busybox,
    rootDrive,
    cacheDrive,
  });
  if (cacheDrive) await fs.access(cacheDrive, fsConstants.R_OK | fsConstants.W_OK);
  const outcome = await superviseQemu(qemu, args, {
    timeoutMs: opts.timeoutMs ?? 180_000,
    exitGraceMs: opts.exitGraceMs ?? 15_000,
    onLine: opts.onLine,
    signal: opts.signal,
  });
  if (outcome.exitCode === undefined) {
    throw new QemuVmError(
      `the VM ended without an exit code on its exit channel (${outcome.qemuStatus}); console tail:\n${outcome.console.slice(-3000)}`,
      outcome.console,
      outcome.durationMs,
    );
  }
  return {
    exitCode: outcome.exitCode,
    console: outcome.console,
    durationMs: outcome.durationMs,
    accel,
    timings: outcome.timings,
    command: [qemu, ...args],
  };
}
