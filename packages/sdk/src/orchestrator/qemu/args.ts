/**
 * The QEMU command line, built without starting anything (test/qemu-args.test.ts): the
 * machine, the kernel command line for /init, and user-mode networking with
 * `restrict=on` on the link-local net 169.254.169.0/24, where the guest (.15) reaches
 * nothing but explicit forwards to ports on 127.0.0.1: the metadata service at
 * 169.254.169.254:80 and whatever the caller adds. No DNS, no route out, no IPv6.
 */
import type { ForwardMode, GuestForward } from './types.js';

const NET = '169.254.169';
const MMDS_ADDRESS = `${NET}.254`;
/** Addresses slirp or the guest already use: network, host (.2), DNS (.3), guest (.15), broadcast. */
const RESERVED = new Set([0, 2, 3, 15, 255]);

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

/**
 * The file descriptor of the QEMU process on which the guest's second serial port (the
 * exit channel, /dev/ttyS1: see vm-console.ts) arrives. supervise.ts passes one end of a
 * socket pair there (what Node's stdio 'pipe' is), which QEMU takes as a connected socket
 * chardev (a `file:/dev/fd/3` chardev cannot open a socket).
 */
export const EXIT_CHANNEL_FD = 3;

/**
 * The machine: no devices but two serial ports, the console on stdio and the exit channel
 * on EXIT_CHANNEL_FD; no reboot (a guest's poweroff ends QEMU). Under TCG the CPU is `max`:
 * without its RDRAND (`qemu64`, or `max,-rdrand,-rdseed`) node's every start in the guest
 * took ~1 s longer before V8 started (bench/README.md, #7 "the least Node agent").
 */
export function machineArgs(accel: 'tcg' | 'kvm', memoryMiB: number, cpus: number): string[] {
  return [
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-monitor',
    'none',
    '-serial',
    'stdio',
    '-chardev',
    `socket,id=exit,fd=${EXIT_CHANNEL_FD}`,
    '-serial',
    'chardev:exit',
    '-no-reboot',
    '-machine',
    `pc,accel=${accel}`,
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-m',
    String(memoryMiB),
    '-smp',
    String(cpus),
  ];
}

/**
 * The kernel command line: /init reads `swarm.<name>=<value>` settings from it.
 * `pci=noacpi`: PCI interrupts are routed from the BIOS's table instead of by running the
 * ACPI tables' AML, which under TCG cost ~0.35 s of probing the virtio devices (loading
 * virtio_pci: 0.37 s → 0.03 s) and ~0.15 s of the kernel's own boot (bench/README.md, #7).
 * The devices use MSI-X, which ACPI does not route; ACPI still powers the VM off.
 */
export function kernelCommandLine(settings: Record<string, string> = {}, kernelArgs: string[] = []): string {
  const swarm = Object.entries(settings).map(([k, v]) => {
    if (!/^[A-Za-z0-9_]+$/.test(k) || /[\s"]/.test(v))
      throw new TypeError(`setting ${k}=${v}: names are [A-Za-z0-9_], values have no spaces or quotes`);
    return `swarm.${k}=${v}`;
  });
  return ['console=ttyS0', 'panic=-1', 'quiet', 'pci=noacpi', ...swarm, ...kernelArgs].join(' ');
}

export type VmArgs = {
  accel: 'tcg' | 'kvm';
  memoryMiB: number;
  cpus: number;
  kernel: string;
  initrd: string;
  /** The kernel command line (kernelCommandLine). */
  append: string;
  metadataPort: number;
  forwards: GuestForward[];
  forwardMode: ForwardMode;
  busybox?: string;
  /** The image's root file system, attached read-only as the first virtio disk (vda). */
  rootDrive?: string;
  /** An ext4 image attached as the next virtio disk (vdb with a root drive, else vda). */
  cacheDrive?: string;
};

/** QEMU's arguments for one boot. */
export function qemuArgs(vm: VmArgs): string[] {
  const netdev = [
    'user',
    'id=n0',
    'restrict=on',
    'ipv6=off',
    `net=${NET}.0/24`,
    `host=${NET}.2`,
    ...guestForwards(vm.metadataPort, vm.forwards, vm.forwardMode, vm.busybox),
  ];
  if (netdev.some((p) => p.includes(','))) throw new TypeError('a forward contains a comma');
  const args = [
    ...machineArgs(vm.accel, vm.memoryMiB, vm.cpus),
    '-kernel',
    vm.kernel,
    '-initrd',
    vm.initrd,
    '-append',
    vm.append,
    '-netdev',
    netdev.join(','),
    '-device',
    'virtio-net-pci,netdev=n0,romfile=',
  ];
  if (vm.rootDrive) {
    args.push(
      '-drive',
      `file=${vm.rootDrive.replaceAll(',', ',,')},if=none,id=root,format=raw,readonly=on`,
      '-device',
      'virtio-blk-pci,drive=root',
    );
  }
  if (vm.cacheDrive) {
    args.push('-drive', `file=${vm.cacheDrive.replaceAll(',', ',,')},if=none,id=cache,format=raw`, '-device', 'virtio-blk-pci,drive=cache');
  }
  return args;
}
