/** The bundle cache drive: an ext4 image that outlives the VMs that mount it. */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

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
