/**
 * A real registry for one test file: its own database on the shared PostgreSQL, its own
 * bucket on the shared S3 server (or its own fs store), listening on a loopback port.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import postgres from 'postgres';
import { inject } from 'vitest';
import './provided.js';
import { loadConfig } from '../../packages/server/src/config.js';
import { createLogger } from '../../packages/server/src/logger.js';
import { type RunningRegistry, startRegistry } from '../../packages/server/src/registry.js';
import { createSwarmClient } from '../../packages/sdk/src/index.js';
import { bundle } from '../../packages/boot-agent/test/support/archives.js';

export type StorageKind = 'fs' | 's3';

const uid = () => randomBytes(6).toString('hex');

/** A fresh, empty database on the test PostgreSQL; returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const adminUrl = inject('databaseUrl');
  const name = `swarm_test_${uid()}`;
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await sql.unsafe(`create database "${name}"`);
  await sql.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

// Tests read response bodies loosely and assert on their fields.
type JsonResponse = Omit<Response, 'json' | 'clone'> & { json(): Promise<any>; clone(): JsonResponse };

export type TestRegistry = RunningRegistry & {
  adminToken: string;
  /** Every JSON log line the registry wrote. */
  logs: string[];
  storage: StorageKind;
  bucket: string | undefined;
  client: (token?: string) => ReturnType<typeof createSwarmClient>;
  /** fetch with the admin token (or the given one); JSON bodies are untyped in tests. */
  fetch: (pathname: string, init?: RequestInit & { token?: string | null }) => Promise<JsonResponse>;
  dataDir: string;
};

export async function startTestRegistry(opts: {
  storage: StorageKind;
  env?: Record<string, string>;
  databaseUrl?: string;
  /** Share a bucket with another registry (replicas); default: a fresh one. */
  bucket?: string;
}): Promise<TestRegistry> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-registry-'));
  const adminToken = `test-admin-${randomBytes(16).toString('hex')}`;
  const s3 = inject('s3');
  const bucket = opts.storage === 's3' ? (opts.bucket ?? `swarm-test-${uid()}`) : undefined;
  const env: Record<string, string> = {
    HOST: '127.0.0.1',
    PORT: '0',
    SWARM_DATA_DIR: dataDir,
    SWARM_ADMIN_TOKEN: adminToken,
    DATABASE_URL: opts.databaseUrl ?? (await createTestDatabase()),
    LOG_LEVEL: 'info',
    SWARM_SHUTDOWN_GRACE_SECONDS: '1',
    SWARM_CHECK_ANSWERS: '1',
    ...(bucket
      ? { S3_ENDPOINT: s3.endpoint, S3_ACCESS_KEY: s3.accessKey, S3_SECRET_KEY: s3.secretKey, S3_BUCKET: bucket, S3_REGION: s3.region }
      : {}),
    ...opts.env,
  };
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const registry = await startRegistry(loadConfig(env), createLogger('info', sink));
  const closeRegistry = registry.close;
  return Object.assign(registry, {
    adminToken,
    logs,
    storage: opts.storage,
    bucket,
    dataDir,
    client: (token = adminToken) => createSwarmClient({ url: registry.url, token }),
    fetch: (pathname: string, init: RequestInit & { token?: string | null } = {}) => {
      const headers = new Headers(init.headers);
      const token = init.token === undefined ? adminToken : init.token;
      if (token !== null) headers.set('authorization', `Bearer ${token}`);
      return fetch(`${registry.url}${pathname}`, { ...init, headers }) as Promise<JsonResponse>;
    },
    close: async () => {
      await closeRegistry();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  });
}

/**
 * A real bundle (a gzip'd tar the registry and the boot agent accept) of `size` bytes of
 * seeded noise in one file: incompressible, so the upload is a little over `size` bytes.
 */
export function bundleBytes(seed: string, size = 1024): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const noise = createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
  return bundle([{ path: 'data.bin', body: noise }]).bytes;
}

export const sha256 = (data: Buffer | ArrayBuffer | Uint8Array) =>
  createHash('sha256')
    .update(data instanceof ArrayBuffer ? new Uint8Array(data) : data)
    .digest('hex');

/** Two registries sharing one fresh database and one fresh bucket: replicas. */
export async function startReplicas(env: Record<string, string> = { LOG_LEVEL: 'warn' }) {
  const databaseUrl = await createTestDatabase();
  const bucket = `swarm-test-${uid()}`;
  const [a, b] = await Promise.all([
    startTestRegistry({ storage: 's3', databaseUrl, bucket, env }),
    startTestRegistry({ storage: 's3', databaseUrl, bucket, env }),
  ]);
  return { a, b, databaseUrl, bucket };
}
