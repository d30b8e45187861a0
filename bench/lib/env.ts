/**
 * The benchmark's world, started once per run from the test helpers: embedded PostgreSQL
 * (test/support/postgres-server.ts) and OpenStack Swift with s3api (test/support/swift.ts),
 * all on loopback, all removed at the end. Each figure gets its own database and bucket.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as Minio from 'minio';
import postgres from 'postgres';
import { freeLoopbackPort } from '../../packages/server/src/db/embedded.js';
import { createSwarmClient } from '../../packages/sdk/src/index.js';
import { startService } from '../../test/support/service.js';
import { startSwiftS3 } from '../../test/support/swift.js';
import { type ServerProcess, startServerProcess } from '../../test/support/server-process.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type S3 = { endpoint: string; accessKey: string; secretKey: string; region: string };

export type BenchEnv = {
  workDir: string;
  databaseUrl: string;
  s3: S3;
  /** A fresh, empty database; returns its URL. */
  createDatabase(): Promise<string>;
  /** A minio client for the S3 server, and a fresh bucket on it. */
  minio(): Minio.Client;
  createBucket(): Promise<string>;
  /** A registry as `pnpm start` runs it (its own process: its RSS and CPU are its own), on S3. */
  startRegistry(env?: Record<string, string>, nodeArgs?: string[]): Promise<Registry>;
  stop(): Promise<void>;
};

export type Registry = ServerProcess & { token: string; bucket: string; databaseUrl: string; client: ReturnType<typeof createSwarmClient> };

/** SWARM_BENCH_PROFILE=<dir>: every registry the bench starts writes a V8 CPU profile there (`node --cpu-prof`). */
const profileArgs = () =>
  process.env.SWARM_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.SWARM_BENCH_PROFILE)}`] : [];

const uid = () => randomBytes(5).toString('hex');

export async function startBenchEnv(): Promise<BenchEnv> {
  const stops: Array<() => Promise<unknown>> = [];
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-bench-'));
  await fs.chmod(workDir, 0o711); // the embedded PostgreSQL runs as "postgres" when we are root
  stops.push(() => fs.rm(workDir, { recursive: true, force: true }));
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  };
  try {
    const pg = await startService('embedded PostgreSQL', process.execPath, [
      '--import',
      'tsx',
      path.join(root, 'test/support/postgres-server.ts'),
      path.join(workDir, 'pg'),
    ]);
    stops.push(() => pg.stop());
    const swift = await startSwiftS3({
      dataDir: path.join(workDir, 's3'),
      port: await freeLoopbackPort(),
      accessKey: 'swarmbench:bench',
      secretKey: randomBytes(16).toString('hex'),
    });
    stops.push(() => swift.stop());
    const s3: S3 = { endpoint: swift.url, accessKey: swift.accessKey, secretKey: swift.secretKey, region: 'us-east-1' };
    const url = new URL(s3.endpoint);
    const minio = () =>
      new Minio.Client({
        endPoint: url.hostname,
        port: Number(url.port),
        useSSL: false,
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
        region: s3.region,
        pathStyle: true,
      });

    const createDatabase = async () => {
      const name = `swarm_bench_${uid()}`;
      const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
      await sql.unsafe(`create database "${name}"`);
      await sql.end();
      const u = new URL(pg.url);
      u.pathname = `/${name}`;
      return u.toString();
    };
    const createBucket = async () => {
      const bucket = `swarm-bench-${uid()}`;
      await minio().makeBucket(bucket, s3.region);
      return bucket;
    };
    const startRegistry = async (env: Record<string, string> = {}, nodeArgs: string[] = profileArgs()): Promise<Registry> => {
      const token = `bench-admin-${randomBytes(16).toString('hex')}`;
      const bucket = `swarm-bench-${uid()}`;
      const databaseUrl = await createDatabase();
      const server = await startServerProcess(
        {
          DATABASE_URL: databaseUrl,
          S3_ENDPOINT: s3.endpoint,
          S3_ACCESS_KEY: s3.accessKey,
          S3_SECRET_KEY: s3.secretKey,
          S3_BUCKET: bucket,
          SWARM_ADMIN_TOKEN: token,
          SWARM_DATA_DIR: path.join(workDir, `registry-${uid()}`),
          PORT: String(await freeLoopbackPort()),
          LOG_LEVEL: 'warn',
          // The product's default, whatever the shell exports: the tests' answer check costs ~7 µs a call.
          SWARM_CHECK_ANSWERS: '0',
          ...env,
        },
        90_000,
        nodeArgs,
      );
      stops.push(() => server.stop('SIGTERM'));
      return Object.assign(server, { token, bucket, databaseUrl, client: createSwarmClient({ url: server.url, token }) });
    };
    return { workDir, databaseUrl: pg.url, s3, createDatabase, minio, createBucket, startRegistry, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Peak RSS tracking of another process: /proc/<pid>/clear_refs resets VmHWM to the current RSS. */
export async function procMemory(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(await fs.readFile(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} for process ${pid}`);
  return Number(m[1]) * 1024;
}
/** CPU time (user + system, ms) another process has used so far: /proc/<pid>/stat, in clock ticks (100 a second). */
export async function procCpuMs(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
/**
 * CPU time (ms) every PostgreSQL process on the machine has used so far: the live ones
 * (postmaster, backends, WAL writer, …) plus, through the postmaster's cutime/cstime, the
 * backends it already reaped (a load's connections close when it ends). The bench runs one
 * cluster, so this is its CPU.
 */
export async function postgresCpuMs(): Promise<number> {
  let ticks = 0;
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (!stat.includes('(postgres)')) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
    const parent = await fs.readFile(`/proc/${fields[1]}/stat`, 'utf8').catch(() => '');
    if (!parent.includes('(postgres)')) ticks += Number(fields[13]) + Number(fields[14]);
  }
  return ticks * 10;
}
export const resetPeak = (pid: number) => fs.writeFile(`/proc/${pid}/clear_refs`, '5');
