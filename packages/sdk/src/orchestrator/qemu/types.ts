/** The qemu driver's options, results and error (see index.ts for what it does). */

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
  /**
   * The image's read-only root file system (ext4), attached first and `readonly=on`, so
   * VMs booting side by side share it without fighting over QEMU's image lock. Default:
   * `<imageDir>/root.ext4` when there is one; `false`: none (the floor's initramfs-only boot).
   */
  rootDrive?: string | false;
  memoryMiB?: number;
  cpus?: number;
  accel?: QemuAccel;
  /** Hard limit for the whole boot: QEMU is killed and the promise rejects (default 180 s). */
  timeoutMs?: number;
  /** After the exit code arrived on the exit channel, how long QEMU may take to power off before it is killed (default 15 s). */
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
  /** QEMU start → the exit code on the exit channel. */
  exitMarkerMs?: number;
  /** Exit code → QEMU gone. */
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
