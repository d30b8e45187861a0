/**
 * The composition root: from a Config to a listening registry. Starts the embedded
 * PostgreSQL when DATABASE_URL is unset, migrates under an advisory lock, opens the
 * object store (S3 or the local directory) and serves the API.
 */
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { lockDataDir, readOrCreateSecret } from './data-dir.js';
import { connectDatabase } from './db/client.js';
import { type EmbeddedDatabase, startEmbeddedPostgres } from './db/embedded.js';
import { migrateDatabase } from './db/migrate.js';
import { buildApp } from './http/app.js';
import { createLogger } from './logger.js';
import { hashAdminToken } from './services/auth.js';
import type { Deps } from './services/context.js';
import { CachedListings } from './services/diff.js';
import { SpawnBatcher } from './services/spawn-batcher.js';
import { reapExecutions } from './services/executions.js';
import { createCaches, startCacheInvalidation } from './services/release-cache.js';
import { BundleStore } from './storage/bundle-store.js';
import type { StorageDriver } from './storage/driver.js';
import { FsDriver } from './storage/fs.js';
import { S3Driver } from './storage/s3.js';

export type RunningRegistry = {
  /** Where the API listens. */
  url: string;
  /** The admin token, when the registry generated it (first start without SWARM_ADMIN_TOKEN). */
  generatedAdminToken: string | undefined;
  adminTokenFile: string | undefined;
  app: FastifyInstance;
  deps: Deps;
  close(): Promise<void>;
};

export async function startRegistry(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningRegistry> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const close = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err) => logger.warn({ err }, 'shutdown step failed'));
  };
  try {
    const usesDataDir = !config.databaseUrl || !config.s3 || !config.adminToken;
    if (usesDataDir) {
      cleanups.push(
        await lockDataDir(config.dataDir, (err) => logger.error({ err }, 'lost the data directory lock; another registry may start on it')),
      );
    }

    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      const embedded: EmbeddedDatabase = await startEmbeddedPostgres(config.dataDir, (msg) => logger.info(msg));
      cleanups.push(() => embedded.stop());
      databaseUrl = embedded.url;
    }
    await migrateDatabase(databaseUrl);
    const database = connectDatabase(databaseUrl, { poolSize: config.dbPoolSize, prepare: config.dbPrepare });
    cleanups.push(() => database.close());

    let adminToken = config.adminToken;
    let generatedAdminToken: string | undefined;
    let adminTokenFile: string | undefined;
    if (!adminToken) {
      adminTokenFile = path.join(config.dataDir, 'admin-token');
      const secret = await readOrCreateSecret(adminTokenFile);
      adminToken = secret.value;
      if (secret.created) generatedAdminToken = adminToken;
    }

    // Port 0 (tests) is only known after listen; the fs driver's URLs need it, so they read it lazily.
    let listenUrl = '';
    const publicUrl = () => config.publicUrl ?? listenUrl;
    let driver: StorageDriver;
    if (config.s3) {
      driver = new S3Driver(config.s3);
    } else {
      const signingKey = config.urlSigningKey ?? (await readOrCreateSecret(path.join(config.dataDir, 'url-signing-key'))).value;
      driver = new FsDriver({ root: path.join(config.dataDir, 'store'), publicUrl, signingKey });
    }
    await driver.init();

    const caches = createCaches(config.cacheTtlSeconds);
    if (config.cacheTtlSeconds > 0) {
      const listener = startCacheInvalidation(databaseUrl, caches, logger);
      cleanups.push(() => listener.close());
    }
    const deps: Deps = {
      db: database.db,
      // Reusing signed URLs goes with the caches (SWARM_CACHE_TTL_SECONDS=0 turns both off).
      store: new BundleStore(driver, { reuseUrls: config.cacheTtlSeconds > 0 }),
      config,
      publicUrl,
      log: logger,
      caches,
      listings: new CachedListings(config.diffs),
      spawns: new SpawnBatcher(database.db),
    };
    await sweepUploads(deps);
    cleanups.push(startExecutionReaper(deps));
    const app = await buildApp({ ...deps, adminTokenHash: hashAdminToken(adminToken) }, logger);
    cleanups.push(async () => {
      // Idle connections close at once and in-flight requests may finish; whatever is
      // still open after the grace period is cut off.
      const force = setTimeout(() => app.server.closeAllConnections(), config.shutdownGraceMs);
      // A keep-alive connection whose request finishes during the grace period goes idle;
      // close it then, or shutdown would wait out the whole grace period for it.
      const idle = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await app.close();
      } finally {
        clearTimeout(force);
        clearInterval(idle);
      }
    });
    const address = await app.listen({ host: config.host, port: config.port });
    listenUrl = address.replace('[::1]', 'localhost');
    return { url: listenUrl, generatedAdminToken, adminTokenFile, app, deps, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Removes temporary upload objects that a crash (SIGKILL, power loss) left under
 * uploads/, once older than SWARM_UPLOAD_SWEEP_AFTER_SECONDS so that other replicas'
 * uploads in flight are never touched. A failure is logged, not fatal: the next start
 * sweeps again.
 */
export async function sweepUploads(deps: Deps): Promise<void> {
  try {
    const swept = await deps.store.sweepUploads(deps.config.uploadSweepAfterMs);
    deps.log.info(swept, 'swept leftover uploads');
  } catch (err) {
    deps.log.warn({ err }, 'could not sweep leftover uploads');
  }
}

/**
 * Every so often, ends executions no agent will: stuck in pending or booting for longer than
 * SWARM_EXECUTION_TIMEOUT_SECONDS ("abandoned"), lost, timed out or cancelled past the
 * grace period (services/execution-control.ts). Returns the stop function.
 */
export function startExecutionReaper(deps: Deps): () => Promise<void> {
  const timeoutMs = deps.config.executionTimeoutMs;
  // Often enough to notice a lost agent within about one heartbeat interval of its deadline.
  const intervalMs = Math.min(60_000, deps.config.control.heartbeatSeconds * 1000, Math.max(1_000, timeoutMs / 2));
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = reapExecutions(deps, timeoutMs)
      .then((counts) => {
        for (const [reason, count] of Object.entries(counts)) {
          const status = reason === 'cancelled' ? 'cancelled' : 'failed';
          deps.log.warn({ count, reason, timeoutSeconds: timeoutMs / 1000 }, `marked ${reason} executions ${status}`);
        }
      })
      .catch((err) => deps.log.warn({ err }, 'could not reap abandoned executions'))
      .finally(() => (running = undefined));
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
