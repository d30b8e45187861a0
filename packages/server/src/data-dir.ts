/** The registry's data directory: generated secrets, and the lock that keeps one registry per directory. */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { ConfigError } from './config.js';

/** A lock not refreshed for this long belongs to a process that died. */
const LOCK_STALE_MS = 10_000;

/**
 * Refuses a second registry on the same data directory: the embedded PostgreSQL
 * cluster and the fs store belong to one process. proper-lockfile refreshes the lock
 * while we run; a lock left by a killed registry goes stale within LOCK_STALE_MS, and
 * a start waits that long for it before giving up.
 */
export async function lockDataDir(dataDir: string, onCompromised: (err: Error) => void): Promise<() => Promise<void>> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    return await lockfile.lock(dataDir, {
      lockfilePath: path.join(dataDir, 'registry.lock'),
      stale: LOCK_STALE_MS,
      update: LOCK_STALE_MS / 2,
      retries: { retries: Math.ceil(LOCK_STALE_MS / 1000) + 2, factor: 1, minTimeout: 1000, maxTimeout: 1000 },
      onCompromised,
    });
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
