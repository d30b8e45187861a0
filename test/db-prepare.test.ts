/**
 * The registry's database client runs statements with parameters as named prepared
 * statements (db/client.ts `preparing`): planned once per connection instead of parsed,
 * described and planned on every call. Checked on the connection itself, through
 * pg_prepared_statements, with a pool of one so every query shares that connection.
 */
import { eq, inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type Database, PREPARE_MAX_PARAMETERS } from '../packages/server/src/db/client.js';
import { migrateDatabase } from '../packages/server/src/db/migrate.js';
import { tenants, workflows } from '../packages/server/src/db/schema.js';
import type { DbOrTx } from '../packages/server/src/db/client.js';
import { createTestDatabase } from './support/registry.js';

/**
 * The registry's statements prepared on the connection `db` runs on (not postgres.js's own
 * look-up of array types at connect; a statement without parameters is not prepared itself).
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
    return database.db;
  };

  beforeAll(async () => {
    url = await createTestDatabase();
    await migrateDatabase(url);
  });
  afterAll(async () => {
    await Promise.all(open.map((d) => d.close()));
  });

  it('a query with parameters is prepared once on its connection and answers as before', async () => {
    const db = connect();
    await db.insert(tenants).values({ slug: 'prepared' });
    for (let i = 0; i < 3; i++) {
      const rows = await db.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.slug, 'prepared'));
      expect(rows).toEqual([{ slug: 'prepared' }]);
    }
    const statements = await prepared(db);
    expect(statements.filter((s) => s.startsWith('select "slug" from "tenants"'))).toHaveLength(1);
  });

  it('in a transaction and in a savepoint too', async () => {
    const db = connect();
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

  it(`a query with more than ${PREPARE_MAX_PARAMETERS} parameters stays unnamed (its text grows with its input)`, async () => {
    const db = connect();
    const slugs = (n: number) => Array.from({ length: n }, (_, i) => `s${i}`);
    await db
      .select({ id: tenants.id })
      .from(tenants)
      .where(inArray(tenants.slug, slugs(PREPARE_MAX_PARAMETERS)));
    await db
      .select({ slug: tenants.slug })
      .from(tenants)
      .where(inArray(tenants.slug, slugs(PREPARE_MAX_PARAMETERS + 1)));
    const statements = await prepared(db);
    expect(statements.some((s) => s.startsWith('select "id" from "tenants"'))).toBe(true);
    expect(statements.some((s) => s.startsWith('select "slug" from "tenants"'))).toBe(false);
  });

  it('prepare: false (SWARM_DB_PREPARE=0) prepares nothing', async () => {
    const db = connect(false);
    const rows = await db.select({ slug: tenants.slug }).from(tenants).where(eq(tenants.slug, 'prepared'));
    expect(rows).toEqual([{ slug: 'prepared' }]);
    expect(await prepared(db)).toEqual([]);
  });
});
