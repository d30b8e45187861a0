/**
 * The registry's database client runs statements with parameters as named prepared
 * statements (db/client.ts `preparing`): parsed once per connection instead of parsed and
 * described on every call, one query per connection at a time. Checked on the connection
 * itself, through pg_prepared_statements, with a pool of one so every query shares it.
 */
import { eq, inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbOrTx } from '../packages/server/src/db/client.js';
import { connectDatabase, type Database, PREPARE_MAX_PARAMETERS } from '../packages/server/src/db/client.js';
import { migrateDatabase } from '../packages/server/src/db/migrate.js';
import { tenants, workflows } from '../packages/server/src/db/schema.js';
import { createTestDatabase } from './support/registry.js';

/**
 * The registry's statements prepared on the connection `db` runs on (not postgres.js's own
 * look-up of array types at connect; this query has no parameters, so it is not prepared).
 */
async function prepared(db: DbOrTx): Promise<string[]> {
  const rows = await db.execute<{ statement: string }>(
    sql`select statement from pg_prepared_statements where statement not like '%pg_catalog%' order by prepare_time`,
  );
  return rows.map((r) => r.statement);
}

describe('prepared statements', () => {
  let url: string;
  const open: Database[] = [];
  const connect = (prepare?: boolean) => {
    const database = connectDatabase(url, { poolSize: 1, prepare });
    open.push(database);
    return database;
  };

  beforeAll(async () => {
    url = await createTestDatabase();
    await migrateDatabase(url);
  });
  afterAll(async () => {
    await Promise.all(open.map((d) => d.close()));
  });

  it('a query with parameters is prepared once on its connection and answers as before', async () => {
    const { db } = connect();
    await db.insert(tenants).values({ slug: 'prepared' });
    for (let i = 0; i < 3; i++) {
      const rows = await db.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.slug, 'prepared'));
      expect(rows).toEqual([{ slug: 'prepared' }]);
    }
    const statements = await prepared(db);
    expect(statements.filter((s) => s.startsWith('select "slug" from "tenants"'))).toHaveLength(1);
  });

  it('in a transaction and in a savepoint too', async () => {
    const { db } = connect();
    const inside = await db.transaction(async (tx) => {
      await tx.select({ id: workflows.id }).from(workflows).where(eq(workflows.name, 'none'));
      return tx.transaction(async (nested) => {
        await nested.select({ id: tenants.id }).from(tenants).where(eq(tenants.slug, 'none'));
        return prepared(nested);
      });
    });
    expect(inside.some((s) => s.startsWith('select "id" from "workflows"'))).toBe(true);
    expect(inside.some((s) => s.startsWith('select "id" from "tenants"'))).toBe(true);
  });

  it(`a query without parameters, or with more than ${PREPARE_MAX_PARAMETERS} (its text grows with its input), stays unnamed`, async () => {
    const { db } = connect();
    const slugs = (n: number) => Array.from({ length: n }, (_, i) => `s${i}`);
    await db
      .select({ id: tenants.id })
      .from(tenants)
      .where(inArray(tenants.slug, slugs(PREPARE_MAX_PARAMETERS)));
    await db
      .select({ slug: tenants.slug })
      .from(tenants)
      .where(inArray(tenants.slug, slugs(PREPARE_MAX_PARAMETERS + 1)));
    await db.execute(sql`select count(*) from tenants where slug like 'none%'`);
    const statements = await prepared(db);
    expect(statements.some((s) => s.startsWith('select "id" from "tenants"'))).toBe(true);
    expect(statements.some((s) => s.startsWith('select "slug" from "tenants"'))).toBe(false);
    expect(statements.some((s) => s.includes("like 'none%'"))).toBe(false);
  });

  it('prepare: false (SWARM_DB_PREPARE=0) prepares nothing, postgres.js its own statements neither', async () => {
    const { db } = connect(false);
    await db.insert(tenants).values({ slug: 'unprepared' });
    const rows = await db.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.slug, 'unprepared'));
    expect(rows).toEqual([{ slug: 'unprepared' }]);
    const [count] = await db.execute<{ n: number }>(sql`select count(*)::int as n from pg_prepared_statements`);
    expect(count!.n).toBe(0);
  });

  describe('a statement whose result a migration changed', () => {
    beforeAll(async () => {
      const { db } = connect();
      await db.execute(sql`create table prepare_probe (a int, b text)`);
      await db.execute(sql`insert into prepare_probe values (1, 'row of the probe')`);
    });
    const probe = (db: DbOrTx) => db.execute<Record<string, unknown>>(sql`select * from prepare_probe where a = ${1}`);

    it('is prepared again and answers, and a query sent meanwhile gets its own rows (no pipelining)', async () => {
      const database = connect();
      const { db } = database;
      const other = (x: string) => db.execute(sql`select ${x}::text as x`);
      expect(await probe(db)).toEqual([{ a: 1, b: 'row of the probe' }]);
      expect(await other('prepared')).toEqual([{ x: 'prepared' }]);
      await db.execute(sql`alter table prepare_probe add column c int`);
      // postgres.js builds a query again when it retries it: at that moment, send another.
      let builds = 0;
      let meanwhile: Promise<unknown> | undefined;
      Object.assign(database.sql.options, {
        debug: (_: unknown, text: string) => {
          if (text === 'select * from prepare_probe where a = $1' && ++builds === 2)
            process.nextTick(() => {
              // drizzle's query runs once it is awaited: then() sends it now.
              meanwhile = other('the other query').then((rows) => rows);
            });
        },
      });
      const retried = await probe(db);
      expect(builds).toBe(2); // it was retried
      expect(retried).toEqual([{ a: 1, b: 'row of the probe', c: null }]);
      expect(await meanwhile).toEqual([{ x: 'the other query' }]);
    });

    it('inside a transaction fails that transaction once, and the next call prepares afresh', async () => {
      const { db } = connect();
      expect(await db.transaction((tx) => probe(tx))).toHaveLength(1);
      await db.execute(sql`alter table prepare_probe add column d int`);
      const failed = await db.transaction((tx) => probe(tx)).catch((err: Error) => err);
      expect((failed as Error).cause).toMatchObject({ message: expect.stringMatching(/cached plan must not change result type/) });
      expect(await db.transaction((tx) => probe(tx))).toEqual([{ a: 1, b: 'row of the probe', c: null, d: null }]);
    });
  });
});
