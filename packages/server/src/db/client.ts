import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import * as schema from './schema.js';

export type Db = PostgresJsDatabase<typeof schema>;
/** A transaction handle; services accept either. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

export type Database = { db: Db; sql: postgres.Sql; close(): Promise<void> };

export function connectDatabase(url: string, opts: { poolSize: number }): Database {
  const sql = postgres(url, {
    max: opts.poolSize,
    // Fail fast when PostgreSQL is down instead of queueing requests for ever.
    connect_timeout: 5,
    // Seconds to wait before reconnecting after a failed connection. postgres.js's default
    // grows to 10–20 s after a few failures, and queries wait for it: a request would hang
    // that long while PostgreSQL is down, and for as long again after it is back.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 0.5),
    idle_timeout: 30,
    onnotice: () => {},
    connection: { application_name: 'swarm-registry' },
  });
  const db = drizzle(sql, { schema });
  return { db, sql, close: () => sql.end({ timeout: 5 }) };
}
