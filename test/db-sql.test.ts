/**
 * `pnpm db:sql`: the whole schema as one idempotent SQL file for another migration
 * runner. Applied twice to an empty database it gives exactly the schema drizzle's
 * migrations give, and drizzle then finds nothing left to apply.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateDatabase } from '../packages/server/src/db/migrate.js';
import { readMigrations } from '../packages/server/src/db/migration-files.js';
import { createTestDatabase, startTestRegistry } from './support/registry.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

type Run = { code: number; stdout: string; stderr: string };
/** `pnpm db:sql …` as an operator types it, from `cwd`. */
function dbSql(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      'pnpm',
      ['--dir', root, 'db:sql', ...args],
      { cwd, env: { PATH: process.env.PATH, HOME: process.env.HOME }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}

/** Everything that makes up the schema, read from the catalog: tables, columns, constraints, indexes, views, sequences, triggers, functions, enums. */
async function schemaOf(url: string) {
  return withSql(url, async (sql) => {
    const schemas = ['public', 'drizzle'];
    return {
      tables:
        await sql`select table_schema, table_name, table_type from information_schema.tables where table_schema in ${sql(schemas)} order by 1, 2`,
      columns: await sql`
        select table_schema, table_name, column_name, ordinal_position, data_type, udt_name, character_maximum_length,
               column_default, is_nullable, is_identity, is_generated, generation_expression
        from information_schema.columns where table_schema in ${sql(schemas)} order by 1, 2, 4`,
      constraints: await sql`
        select n.nspname, c.conrelid::regclass::text as rel, c.conname, c.contype, pg_get_constraintdef(c.oid) as def
        from pg_constraint c join pg_namespace n on n.oid = c.connamespace where n.nspname in ${sql(schemas)} order by 1, 2, 3`,
      indexes:
        await sql`select schemaname, tablename, indexname, indexdef from pg_indexes where schemaname in ${sql(schemas)} order by 1, 2, 3`,
      views: await sql`select schemaname, viewname, definition from pg_views where schemaname in ${sql(schemas)} order by 1, 2`,
      sequences:
        await sql`select sequence_schema, sequence_name, data_type, start_value, increment from information_schema.sequences where sequence_schema in ${sql(schemas)} order by 1, 2`,
      triggers: await sql`
        select t.tgname, pg_get_triggerdef(t.oid) as def from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
        where not t.tgisinternal and n.nspname in ${sql(schemas)} order by 1`,
      functions: await sql`
        select p.proname, pg_get_functiondef(p.oid) as def from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ${sql(schemas)} order by 1`,
      enums: await sql`
        select t.typname, array_agg(e.enumlabel order by e.enumsortorder) as labels from pg_type t join pg_enum e on e.enumtypid = t.oid
        join pg_namespace n on n.oid = t.typnamespace where n.nspname in ${sql(schemas)} group by 1 order by 1`,
      migrations: await sql`select hash, created_at from drizzle.__drizzle_migrations order by id`,
    };
  });
}

describe('pnpm db:sql', () => {
  let dir: string;
  let file: string;
  let text: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-db-sql-'));
    const run = await dbSql(['--prefix', '016'], dir);
    expect(run.code, run.stderr).toBe(0);
    file = path.join(dir, '016_workflow_bundles.sql');
    text = await fs.readFile(file, 'utf8');
  });
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  it('--prefix 016 writes 016_workflow_bundles.sql in the directory it was run from', () => {
    expect(text.startsWith('-- 016_workflow_bundles.sql:')).toBe(true);
  });

  it('covers every migration in drizzle/, one guarded block each, in one transaction', () => {
    for (const m of readMigrations()) expect(text).toContain(`WHERE hash = '${m.hash}'`);
    expect(text.match(/^BEGIN;$/gm)).toHaveLength(1);
    expect(text.trimEnd().endsWith('COMMIT;')).toBe(true);
  });

  it('prints the same file on stdout without options', async () => {
    const run = await dbSql([], dir);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(text.replace('-- 016_workflow_bundles.sql:', '-- workflow_bundles.sql:'));
  });

  it('-o writes where it is told', async () => {
    const run = await dbSql(['--prefix', '016', '-o', 'out/schema.sql'], dir);
    // out/ does not exist: refused with one line.
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/db:sql: cannot write \S+out\/schema\.sql: ENOENT/);
    await fs.mkdir(path.join(dir, 'out'));
    expect((await dbSql(['--prefix', '016', '-o', 'out/schema.sql'], dir)).code).toBe(0);
    expect(await fs.readFile(path.join(dir, 'out/schema.sql'), 'utf8')).toBe(text);
  });

  it('--help says what the options do', async () => {
    const run = await dbSql(['--help'], dir);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('usage: pnpm db:sql [--prefix <digits>] [-o <file>]');
    expect(run.stdout).toContain('write 016_workflow_bundles.sql in the current directory');
  });

  it('refuses a prefix that is not digits', async () => {
    const run = await dbSql(['--prefix', '16a'], dir);
    expect(run.code).toBe(64);
    expect(run.stderr).toContain('db:sql: --prefix takes digits, e.g. 016');
  });

  it('refuses an unknown option', async () => {
    const run = await dbSql(['--schema', 'x'], dir);
    expect(run.code).toBe(64);
    expect(run.stderr).toContain("Unknown option '--schema'");
  });

  it('applied twice to an empty database gives exactly the schema of drizzle-kit’s migrations', async () => {
    const bySql = await createTestDatabase();
    await withSql(bySql, (sql) => sql.unsafe(text));
    const once = await schemaOf(bySql);
    await withSql(bySql, (sql) => sql.unsafe(text));
    const twice = await schemaOf(bySql);
    expect(twice).toEqual(once);

    const byDrizzle = await createTestDatabase();
    await migrateDatabase(byDrizzle);
    expect(twice).toEqual(await schemaOf(byDrizzle));
    expect(twice.tables.length).toBeGreaterThan(5);
    expect(twice.migrations).toHaveLength(readMigrations().length);
  });

  it('leaves nothing for pnpm db:migrate to do afterwards', async () => {
    const url = await createTestDatabase();
    await withSql(url, (sql) => sql.unsafe(text));
    const before = await schemaOf(url);
    await migrateDatabase(url);
    expect(await schemaOf(url)).toEqual(before);
  });

  it('is safe to run from two runners at once (the advisory lock serialises them)', async () => {
    const url = await createTestDatabase();
    await Promise.all([1, 2].map(() => withSql(url, (sql) => sql.unsafe(text))));
    const byDrizzle = await createTestDatabase();
    await migrateDatabase(byDrizzle);
    expect(await schemaOf(url)).toEqual(await schemaOf(byDrizzle));
  });

  it('rolls back completely when a statement fails', async () => {
    const url = await createTestDatabase();
    // A table in the way of the first migration's CREATE TABLE.
    await withSql(url, (sql) => sql`create table tenants (x int)`);
    await expect(withSql(url, (sql) => sql.unsafe(text))).rejects.toThrow(/already exists/);
    // Not even the drizzle schema or its bookkeeping table is left.
    const tables = await withSql(
      url,
      (sql) =>
        sql`select table_schema || '.' || table_name as t from information_schema.tables where table_schema in ('public', 'drizzle')`,
    );
    expect(tables.map((r) => r.t)).toEqual(['public.tenants']);
  });

  it('sets up a database a registry starts on and works with', async () => {
    const url = await createTestDatabase();
    await withSql(url, (sql) => sql.unsafe(text));
    const before = await schemaOf(url);
    const reg = await startTestRegistry({ storage: 'fs', databaseUrl: url, env: { LOG_LEVEL: 'warn' } });
    try {
      expect((await reg.fetch('/healthz')).status).toBe(200);
      const c = reg.client();
      await c.call(() => c.trpc.tenants.create.mutate({ slug: 'platform' }));
      expect((await c.call(() => c.trpc.tenants.list.query())).map((t) => t.slug)).toEqual(['platform']);
    } finally {
      await reg.close();
    }
    expect((await schemaOf(url)).migrations).toEqual(before.migrations);
  });
});
