/**
 * `swarm doctor` against real dependencies: all ok on a healthy registry (S3 and fs
 * store), and one failing line with a hint for each broken dependency.
 */
import * as Minio from 'minio';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freeLoopbackPort } from '../packages/server/src/db/embedded.js';
import { S3Driver } from '../packages/server/src/storage/s3.js';
import { CLOCK_SKEW_FAIL_MS, CLOCK_SKEW_WARN_MS, DOCTOR_PREFIX, classifyClockSkew } from '../packages/server/src/services/doctor.js';
import type { DoctorOutput } from '../packages/sdk/src/cli/commands/doctor.js';
import { swarm } from './support/cli.js';
import { type TestRegistry, createTestDatabase, startTestRegistry } from './support/registry.js';
import { type TcpProxy, startTcpProxy } from './support/tcp-proxy.js';

const doctor = async (reg: TestRegistry, token = reg.adminToken) => {
  const r = await swarm(['doctor', '--json'], { SWARM_URL: reg.url, SWARM_TOKEN: token });
  return { code: r.code, report: JSON.parse(r.stdout) as DoctorOutput, stderr: r.stderr };
};
const statuses = (report: DoctorOutput) => Object.fromEntries(report.checks.map((c) => [c.name, c.status]));
const check = (report: DoctorOutput, name: string) => report.checks.find((c) => c.name === name)!;

function minioFor(endpoint = inject('s3').endpoint): Minio.Client {
  const s3 = inject('s3');
  const url = new URL(endpoint);
  return new Minio.Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: false,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    region: s3.region,
    pathStyle: true,
  });
}

/** Every key in the registry's bucket (the probe object must be gone after each run). */
async function bucketKeys(bucket: string): Promise<string[]> {
  const s3 = inject('s3');
  const driver = new S3Driver({
    endpoint: s3.endpoint,
    publicEndpoint: s3.endpoint,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    bucket,
    region: s3.region,
  });
  const keys: string[] = [];
  for await (const o of driver.list('')) keys.push(o.key);
  return keys;
}

describe('swarm doctor on a healthy registry with the S3 store', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 's3', env: { LOG_LEVEL: 'warn' } });
  });
  afterAll(() => reg?.close());

  it('reports every check ok, in order, and exits 0', async () => {
    const { code, report } = await doctor(reg);
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.storage).toBe('s3');
    expect(report.checks.map((c) => [c.name, c.status])).toEqual([
      ['api', 'ok'],
      ['database', 'ok'],
      ['migrations', 'ok'],
      ['bucket', 'ok'],
      ['store-roundtrip', 'ok'],
      ['presigned-get', 'ok'],
      ['clock-skew', 'ok'],
    ]);
    expect(check(report, 'presigned-get').detail).toContain('S3_PUBLIC_ENDPOINT');
    expect(check(report, 'presigned-get').detail).toContain('not checked from a VM');
  });

  it('leaves no probe object behind', async () => {
    await doctor(reg);
    expect((await bucketKeys(reg.bucket!)).filter((k) => k.startsWith(DOCTOR_PREFIX))).toEqual([]);
  });

  it('prints one line per check without --json', async () => {
    const r = await swarm(['doctor'], { SWARM_URL: reg.url, SWARM_TOKEN: reg.adminToken });
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(7);
    expect(lines[0]).toMatch(/^ok +api +registry \d+\.\d+\.\d+ at http:\/\/127\.0\.0\.1:\d+ answered in \d+ ms \(s3 store\)$/);
    expect(lines[2]).toMatch(/^ok +migrations +all \d+ applied/);
  });

  it('refuses a tenant token: one failing api line, exit 1', async () => {
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'doc' }));
    const { token } = await c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:doc' }));
    const { code, report } = await doctor(reg, token);
    expect(code).toBe(1);
    expect(report.checks).toEqual([
      {
        name: 'api',
        status: 'fail',
        detail: expect.stringContaining('admin token'),
        hint: 'swarm doctor needs an admin token (SWARM_TOKEN or --token)',
      },
    ]);
  });

  it('refuses an orchestrator token', async () => {
    const c = reg.client();
    const { token } = await c.call(() => c.trpc.tokens.create.mutate({ scope: 'orchestrator' }));
    const { code, report } = await doctor(reg, token);
    expect(code).toBe(1);
    expect(statuses(report)).toEqual({ api: 'fail' });
  });

  it('reports an unreachable registry as a failing api line', async () => {
    // A port nothing listens on (freeLoopbackPort closes the one it found).
    const r = await swarm(['doctor', '--json'], { SWARM_URL: `http://127.0.0.1:${await freeLoopbackPort()}`, SWARM_TOKEN: reg.adminToken });
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as DoctorOutput;
    expect(report.checks).toEqual([
      { name: 'api', status: 'fail', detail: expect.stringContaining('cannot reach the registry'), hint: 'is it running? check SWARM_URL' },
    ]);
  });
});

describe('swarm doctor on a healthy registry with the fs store', () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn' } });
  });
  afterAll(() => reg?.close());

  it('checks the store directory and the signed /store download, and exits 0', async () => {
    const { code, report } = await doctor(reg);
    expect(code).toBe(0);
    expect(report.checks.map((c) => [c.name, c.status])).toEqual([
      ['api', 'ok'],
      ['database', 'ok'],
      ['migrations', 'ok'],
      ['store-directory', 'ok'],
      ['store-roundtrip', 'ok'],
      ['signed-download', 'ok'],
      ['clock-skew', 'ok'],
    ]);
    expect(check(report, 'signed-download').detail).toContain('/store route');
  });
});

describe('swarm doctor with a broken dependency', () => {
  it('fails every store check when the store is down, with hints, while the database checks pass', async () => {
    const endpoint = new URL(inject('s3').endpoint);
    const proxy: TcpProxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
    const reg = await startTestRegistry({ storage: 's3', env: { S3_ENDPOINT: proxy.url(inject('s3').endpoint), LOG_LEVEL: 'silent' } });
    try {
      await proxy.cut();
      const { code, report } = await doctor(reg);
      expect(code).toBe(1);
      expect(statuses(report)).toEqual({
        api: 'ok',
        database: 'ok',
        migrations: 'ok',
        bucket: 'fail',
        'store-roundtrip': 'fail',
        'presigned-get': 'fail',
        'clock-skew': 'fail',
      });
      for (const c of report.checks.filter((c) => c.status === 'fail')) expect(c.hint, c.name).toBeTruthy();
      expect(check(report, 'bucket').hint).toContain('S3_ENDPOINT');
      expect(check(report, 'clock-skew').detail).toContain('ECONNREFUSED');
    } finally {
      await reg.close();
      await proxy.close();
    }
  });

  it('fails the database checks when PostgreSQL is down (bootstrap admin token), and still checks the store', async () => {
    const db = new URL(await createTestDatabase());
    const proxy = await startTcpProxy({ host: db.hostname, port: Number(db.port) });
    db.port = String(proxy.port);
    const reg = await startTestRegistry({ storage: 's3', databaseUrl: db.toString(), env: { LOG_LEVEL: 'silent' } });
    try {
      await proxy.cut();
      const { code, report } = await doctor(reg);
      expect(code).toBe(1);
      expect(statuses(report)).toEqual({
        api: 'ok',
        database: 'fail',
        migrations: 'fail',
        bucket: 'ok',
        'store-roundtrip': 'ok',
        'presigned-get': 'ok',
        'clock-skew': 'ok',
      });
      expect(check(report, 'database').hint).toContain('DATABASE_URL');
    } finally {
      await reg.close();
      await proxy.close();
    }
  });

  it('fails when the bucket is gone', async () => {
    const reg = await startTestRegistry({ storage: 's3', env: { LOG_LEVEL: 'silent' } });
    try {
      await minioFor().removeBucket(reg.bucket!);
      const { code, report } = await doctor(reg);
      expect(code).toBe(1);
      expect(check(report, 'bucket')).toMatchObject({ status: 'fail', detail: `bucket ${reg.bucket} does not exist` });
      expect(check(report, 'bucket').hint).toContain(`mc mb <alias>/${reg.bucket}`);
      expect(check(report, 'store-roundtrip').status).toBe('fail');
      expect(check(report, 'database').status).toBe('ok');
    } finally {
      await reg.close();
    }
  });

  describe('migration state', () => {
    let reg: TestRegistry;
    let sql: postgres.Sql;
    beforeAll(async () => {
      const url = await createTestDatabase();
      reg = await startTestRegistry({ storage: 'fs', databaseUrl: url, env: { LOG_LEVEL: 'warn' } });
      sql = postgres(url, { max: 1, onnotice: () => {} });
    });
    afterAll(async () => {
      await reg?.close();
      await sql?.end();
    });

    it('fails naming the migration whose record is missing', async () => {
      const [last] =
        await sql`delete from drizzle.__drizzle_migrations where id = (select max(id) from drizzle.__drizzle_migrations) returning hash, created_at`;
      try {
        const { code, report } = await doctor(reg);
        expect(code).toBe(1);
        const m = check(report, 'migrations');
        expect(m.status).toBe('fail');
        expect(m.detail).toMatch(/^1 of \d+ not applied: \d{4}_\w+$/);
        expect(m.hint).toContain('pnpm db:migrate');
      } finally {
        await sql`insert into drizzle.__drizzle_migrations (hash, created_at) values (${last!.hash}, ${last!.created_at})`;
      }
      expect(check((await doctor(reg)).report, 'migrations').status).toBe('ok');
    });

    it('fails when the database has a migration this registry does not know', async () => {
      await sql`insert into drizzle.__drizzle_migrations (hash, created_at) values (${'f'.repeat(64)}, 99999999999999)`;
      try {
        const { code, report } = await doctor(reg);
        expect(code).toBe(1);
        expect(check(report, 'migrations')).toMatchObject({ status: 'fail', detail: expect.stringContaining('ffffffffffff') });
        expect(check(report, 'migrations').hint).toContain('newer registry');
      } finally {
        await sql`delete from drizzle.__drizzle_migrations where hash = ${'f'.repeat(64)}`;
      }
    });
  });
});

describe('clock skew against the store', () => {
  it('is ok within 30 s either way', () => {
    expect(classifyClockSkew(CLOCK_SKEW_WARN_MS).status).toBe('ok');
    expect(classifyClockSkew(-CLOCK_SKEW_WARN_MS).status).toBe('ok');
  });
  it('warns above 30 s', () => {
    expect(classifyClockSkew(CLOCK_SKEW_WARN_MS + 1000)).toMatchObject({ status: 'warn', detail: expect.stringContaining('31.0 s ahead') });
    expect(classifyClockSkew(-CLOCK_SKEW_WARN_MS - 1000).detail).toContain('behind');
  });
  it('fails above 15 minutes, where SigV4 refuses requests', () => {
    expect(classifyClockSkew(CLOCK_SKEW_FAIL_MS + 1000)).toMatchObject({ status: 'fail', hint: expect.stringContaining('SigV4') });
  });
});
