/**
 * Which acceleration a boot gets. `'auto'` uses KVM only when /dev/kvm is usable AND a
 * probe boot (`swarm.probe=1`: /init powers off at once) finishes within 10 s, once per
 * process — nested KVM guests have been seen to hang during boot — and TCG (software
 * emulation) otherwise; `'kvm'` and `'tcg'` force one.
 */
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import { kernelCommandLine, machineArgs } from './args.js';
import { superviseQemu } from './supervise.js';
import type { QemuAccel } from './types.js';

let kvmProbe: Promise<boolean> | undefined;

export async function chooseAccel(requested: QemuAccel, image: { kernel: string; initrd: string; qemu: string }): Promise<'tcg' | 'kvm'> {
  if (!['tcg', 'kvm', 'auto'].includes(requested)) throw new TypeError(`accel: tcg, kvm or auto, not "${requested}"`);
  if (requested !== 'auto') return requested;
  kvmProbe ??= kvmUsable(image);
  return (await kvmProbe) ? 'kvm' : 'tcg';
}

async function kvmUsable(image: { kernel: string; initrd: string; qemu: string }): Promise<boolean> {
  try {
    await fs.access('/dev/kvm', fsConstants.R_OK | fsConstants.W_OK);
  } catch {
    return false;
  }
  const args = [
    ...machineArgs('kvm', 256, 1),
    '-kernel',
    image.kernel,
    '-initrd',
    image.initrd,
    '-append',
    kernelCommandLine({ probe: '1' }),
  ];
  const outcome = await superviseQemu(image.qemu, args, { timeoutMs: 10_000, exitGraceMs: 5_000 }).catch(() => null);
  return outcome?.exitCode === 0;
}
