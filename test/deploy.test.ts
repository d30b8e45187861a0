/**
 * docs/deploy.md, run: every shell block marked `<!-- exercised: test/deploy.test.ts#<name> -->`
 * is executed here in the documented order, with the documented environment variable
 * names, against the test PostgreSQL and S3 server. The only substitutions: the test's
 * own env file for /etc/swarm/registry.env, a free port for 3000, and unique role and
 * database names for `swarm` (the PostgreSQL server is shared).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as Minio from 'minio';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { configVariables } from '../packages/server/src/config.js';
import { freeLoopbackPort } from '../packages/server/src/db/embedded.js';
import { type FencedBlock as Block, fencedBlocks, tableVariables } from './support/markdown.js';
import { type ServerProcess, startServerProcess } from './support/server-process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file: string) => fs.readFile(path.join(root, file), 'utf8');

const exercised = (blocks: Block[], name: string): string => {
  const found = blocks.filter((b) => b.marker.startsWith(`exercised: test/deploy.test.ts#${name}`));
  expect(found, `docs/deploy.md block #${name}`).toHaveLength(1);
  return found[0]!.body;
};

type Run = { code: number; stdout: string; stderr: string };
function bash(script: string, env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      'bash',
      ['-euo', 'pipefail', '-c', script],
      { cwd: root, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('docs/deploy.md', () => {
  let doc: string;
  let blocks: Block[];
  beforeAll(async () => {
    doc = await read('docs/deploy.md');
    blocks = fencedBlocks(doc);
  });

  it('marks every command block as exercised by this test or as not runnable here', () => {
    expect(blocks.length).toBeGreaterThan(5);
    for (const b of blocks)
      expect(b.marker, b.body.slice(0, 60)).toMatch(/^(exercised: test\/deploy\.test\.ts#[\w-]+|not exercised here: .+)/);
  });

  it('lists exactly the environment variables config.ts reads', () => {
    expect(tableVariables(doc)).toEqual(new Set(configVariables));
  });

  it('has an env file with only variables config.ts reads', () => {
    const names = [...exercised(blocks, 'env-file').matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(5);
    for (const n of names) expect(configVariables).toContain(n);
  });

  it("starts the service with the start script's command", async () => {
    const unit = exercised(blocks, 'unit');
    const execStart = /^ExecStart=\/usr\/bin\/env (.+)$/m.exec(unit)?.[1];
    const pkg = JSON.parse(await read('package.json')) as { scripts: Record<string, string> };
    expect(execStart).toBe(pkg.scripts.start);
    expect(unit).toContain('EnvironmentFile=/etc/swarm/registry.env');
    expect(unit).toContain('WorkingDirectory=/opt/swarm-registry');
  });
});

describe('docs/deploy.md, run step by step', () => {
  const uid = randomBytes(4).toString('hex');
  const role = `swarm_dep_${uid}`;
  const s3 = inject('s3');
  const bucket = `swarm-deploy-${uid}`;
  let blocks: Block[];
  let workDir: string;
  let envFile: string;
  let env: Record<string, string>;
  let port: number;
  let server: ServerProcess | undefined;
  const substitute = (script: string) =>
    script.replaceAll('/etc/swarm/registry.env', envFile).replaceAll('127.0.0.1:3000', `127.0.0.1:${port}`);

  beforeAll(async () => {
    blocks = fencedBlocks(await read('docs/deploy.md'));
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-deploy-'));
    port = await freeLoopbackPort();
    const pg = new URL(inject('databaseUrl'));
    // The env file of step 4 with this machine's values: the same names, nothing else.
    const dbUrl = new URL(`postgres://${role}:change-me@${pg.host}/${role}`);
    env = {
      HOST: '127.0.0.1',
      PORT: String(port),
      SWARM_PUBLIC_URL: `http://127.0.0.1:${port}`,
      SWARM_ADMIN_TOKEN: randomBytes(32).toString('hex'),
      DATABASE_URL: dbUrl.toString(),
      S3_ENDPOINT: s3.endpoint,
      S3_PUBLIC_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY: s3.accessKey,
      S3_SECRET_KEY: s3.secretKey,
      S3_BUCKET: bucket,
      S3_REGION: s3.region,
      LOG_LEVEL: 'warn',
    };
    const documented = [...exercised(blocks, 'env-file').matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
    expect(Object.keys(env).sort()).toEqual(documented.sort());
    envFile = path.join(workDir, 'registry.env');
    await fs.writeFile(
      envFile,
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(''),
    );
  });
  afterAll(async () => {
    await server?.stop();
    await fs.rm(workDir, { recursive: true, force: true });
    await fs.rm(path.join(root, '016_workflow_bundles.sql'), { force: true });
  });

  it('step 2: creates the role and database', async () => {
    const script = exercised(blocks, 'database').replace(/\bswarm\b/g, role);
    const run = await bash(script, { PG_ADMIN_URL: inject('databaseUrl') });
    expect(run.code, run.stderr).toBe(0);
  });

  it('step 3: the bucket exists (mc mb, done with the test S3 server admin key)', async () => {
    const url = new URL(s3.endpoint);
    const client = new Minio.Client({
      endPoint: url.hostname,
      port: Number(url.port),
      useSSL: false,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      region: s3.region,
      pathStyle: true,
    });
    await client.makeBucket(bucket, s3.region);
  });

  it('step 5: pnpm db:sql --prefix 016 and psql apply the schema as the role', async () => {
    const run = await bash(substitute(exercised(blocks, 'sql-file')), env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('wrote');
  });

  it('step 5: pnpm db:migrate then has nothing left to do', async () => {
    const run = await bash(substitute(exercised(blocks, 'migrate')), {});
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('db:migrate: all migrations applied');
  });

  it("step 6: the service's command starts the registry with the env file", async () => {
    server = await startServerProcess(env);
    expect(server.url).toBe(`http://127.0.0.1:${port}`);
  });

  it('step 7: /healthz answers ok and swarm doctor passes every check', async () => {
    const run = await bash(substitute(exercised(blocks, 'check')), env);
    expect(run.code, run.stderr).toBe(0);
    const [health, ...doctor] = run.stdout.trim().split('\n');
    expect(JSON.parse(health!)).toEqual({ status: 'ok', checks: { database: 'ok', storage: 'ok' } });
    const lines = doctor.filter((l) => /^(ok|warn|fail) /.test(l));
    expect(lines.map((l) => l.split(/ +/).slice(0, 2).join(' '))).toEqual([
      'ok api',
      'ok database',
      'ok migrations',
      'ok bucket',
      'ok store-roundtrip',
      'ok presigned-get',
      'ok clock-skew',
    ]);
  });
});
