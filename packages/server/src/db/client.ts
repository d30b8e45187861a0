import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import * as schema from './schema.js';

export type Db = PostgresJsDatabase<typeof schema>;
/** A transaction handle; services accept either. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

export type Database = { db: Db; sql: postgres.Sql; close(): Promise<void> };

export type DatabaseOptions = {
  poolSize: number;
  /** Run statements with parameters as named prepared statements (default true; see `preparing`). */
  prepare?: boolean | undefined;
};

export function connectDatabase(url: string, opts: DatabaseOptions): Database {
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
  const db = drizzle(opts.prepare === false ? sql : preparing(sql), { schema });
  return { db, sql, close: () => sql.end({ timeout: 5 }) };
}

/**
 * Statements with more parameters than this stay unnamed: a query whose text grows with its
 * input (an `in (…)` list, a multi-row insert) then keeps at most this many shapes prepared
 * on a connection instead of one per size. Every hot statement has a handful.
 */
export const PREPARE_MAX_PARAMETERS = 32;

type QueryOptions = NonNullable<Parameters<postgres.Sql['unsafe']>[2]>;
type WithCallback = (...args: unknown[]) => unknown;

/**
 * The client drizzle gets: `sql`, except that a statement with parameters (up to
 * PREPARE_MAX_PARAMETERS) runs as a named prepared statement, parsed and planned once per
 * connection, in transactions and savepoints too.
 *
 * drizzle sends every query through postgres.js's `unsafe` with `prepare: false` (only a
 * query given a name with `.prepare(name)` is prepared), and postgres.js sends an unnamed
 * statement with parameters in two round trips: Parse + Describe, a wait for the parameter
 * types, then Bind + Execute; PostgreSQL parses and plans it again each time. Named, it is
 * described once per connection and then costs one Bind + Execute. Measured with `pnpm bench
 * --only 6b` (50 callers spawning for 10 s): 4,387 → 6,304 spawns/s, PostgreSQL's CPU per
 * spawn 113 → 65 µs; #2b-get (one SELECT a call) 1,899 → 4,000 req/s (bench/README.md).
 *
 * postgres.js keeps the statements per connection and recycles connections (its
 * `max_lifetime`, 30–60 min). A statement whose result a migration changed under a running
 * registry ("cached plan must not change result type") is dropped and prepared again by
 * postgres.js, which retries it; inside a transaction the retry cannot run, so that one
 * transaction fails (the caller sees the error) and the next call prepares afresh.
 * SWARM_DB_PREPARE=0 turns this off for a pooler that cannot keep named statements across
 * transactions (PgBouncer in transaction mode before 1.21).
 */
function preparing<T extends postgres.Sql | postgres.TransactionSql>(sql: T): T {
  const unsafe = (query: string, params?: postgres.ParameterOrJSON<never>[], options?: QueryOptions) =>
    sql.unsafe(query, params, {
      ...options,
      prepare: params !== undefined && params.length > 0 && params.length <= PREPARE_MAX_PARAMETERS,
    });
  // drizzle's transaction is `begin(cb)`, a nested one `savepoint(cb)`: the callback's client prepares too.
  const wrapCallback =
    (method: WithCallback): WithCallback =>
    (...args) => {
      const cb = args.pop() as (tx: postgres.TransactionSql) => unknown;
      return method(...args, (tx: postgres.TransactionSql) => cb(preparing(tx)));
    };
  return new Proxy(sql, {
    get(target, prop, receiver) {
      if (prop === 'unsafe') return unsafe;
      if (prop === 'begin' || prop === 'savepoint') return wrapCallback(Reflect.get(target, prop, receiver) as WithCallback);
      return Reflect.get(target, prop, receiver);
    },
  });
}
