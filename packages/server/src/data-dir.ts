/** The registry's data directory: generated secrets, and the lock that keeps one registry per directory. */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { ConfigError } from './config.js';

/**
 * Refuses a second registry on the same data directory: the embedded PostgreSQL
 * cluster and the fs store belong to one process. proper-lockfile keeps the lock
 * fresh while we run, so a lock left by a killed process goes stale and is taken over.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    return await lockfile.lock(dataDir, { lockfilePath: path.join(dataDir, 'registry.lock'), stale: 15_000, update: 5_000 });
  } catch (err) {
    if ((err as { code?: string }).code === 'ELOCKED') {
      throw new ConfigError(
        `another registry is already running on data directory ${dataDir}; stop it, or give this one its own SWARM_DATA_DIR`,
      );
    }
    throw err;
  }
}

/** Reads a secret kept in the data directory, creating it (mode 0600) on first use. */
export async function readOrCreateSecret(file: string, bytes = 32): Promise<{ value: string; created: boolean }> {
  try {
    return { value: (await fs.readFile(file, 'utf8')).trim(), created: false };
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') throw err;
    const value = randomBytes(bytes).toString('base64url');
    await fs.writeFile(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
    return { value, created: true };
  }
}
