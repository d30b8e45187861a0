import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import * as schema from './schema.js';

export type Db = PostgresJsDatabase<typeof schema>;
/** A transaction handle; services accept either. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

/**
 * `sql` is postgres.js itself, for what drizzle cannot say; a tagged template on it is a
 * named statement that other queries may be pipelined behind (see `preparing`), so the
 * registry queries through `db`.
 */
export type Database = { db: Db; sql: postgres.Sql; close(): Promise<void> };

export type DatabaseOptions = {
  poolSize: number;
  /** Named prepared statements (default true; see `preparing`). false: none at all, postgres.js's own included. */
  prepare?: boolean | undefined;
};

export function connectDatabase(url: string, opts: DatabaseOptions): Database {
  const prepare = opts.prepare !== false;
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
    // postgres.js's own statements (its type lookup at connect, tagged templates).
    prepare,
  });
  const db = drizzle(prepare ? preparing(sql) : sql, { schema });
  return { db, sql, close: () => sql.end({ timeout: 5 }) };
}

/**
 * Statements with more parameters than this stay unnamed: a query whose text grows with its
 * input (an `in (…)` list, a multi-row insert) then keeps at most this many shapes prepared
 * on a connection instead of one per size. Every hot statement has a handful.
 */
export const PREPARE_MAX_PARAMETERS = 32;

type QueryOptions = NonNullable<Parameters<postgres.Sql['unsafe']>[2]> & {
  /**
   * postgres.js's internal hook (its own `begin` uses it; not in its docs): false keeps the
   * connection from taking another query before this one is done. Should an upgrade drop
   * it, test/db-prepare.test.ts's pipelining case fails.
   */
  onexecute?: (connection: unknown) => boolean;
};
type Params = postgres.ParameterOrJSON<never>[];
type WithCallback = (...args: unknown[]) => unknown;

/** One query per connection at a time (see `preparing`). */
const alone = () => false;

/**
 * The client drizzle gets: `sql`, except that a statement with parameters (up to
 * PREPARE_MAX_PARAMETERS) runs as a named prepared statement, parsed once per connection,
 * in transactions and savepoints too.
 *
 * drizzle sends every query through postgres.js's `unsafe` with `prepare: false` (only a
 * query given a name with `.prepare(name)` is prepared), and postgres.js sends an unnamed
 * statement with parameters in two round trips: Parse + Describe, a wait for the parameter
 * types, then Bind + Execute; PostgreSQL parses it and plans it again each time. Named, it
 * is described once per connection and then costs one Bind + Execute; PostgreSQL plans it
 * as its plan cache says (a custom plan for the first five runs, then a generic one unless
 * that looks costlier; `plan_cache_mode` changes this). Measured in bench/README.md "#13
 * after prepared statements".
 *
 * No pipelining: postgres.js sends a query onto a connection still busy with a prepared
 * one when every connection is busy, but an unnamed statement kept its connection to
 * itself (it waits for its Describe), and we keep it so. A pipelined query waits behind a
 * statement blocked on a row lock (a spawn behind a release change), which the pool's other
 * connections would have served; and when postgres.js prepares a statement again and
 * retries it (below), a query pipelined behind it gets the retried statement's rows
 * (reproduced; test/db-prepare.test.ts).
 *
 * postgres.js keeps the statements per connection and recycles connections (`max_lifetime`,
 * 30–60 min). A statement whose result type a migration changed under a running registry
 * (only `*` selects or returns: "cached plan must not change result type"), or that the
 * server no longer knows, is dropped and prepared again by postgres.js, which retries it;
 * inside a transaction the retry cannot run, so that transaction fails (its caller sees the
 * error), once on each pooled connection, and later calls prepare afresh.
 * SWARM_DB_PREPARE=0 turns named statements off (postgres.js's own too) for a pooler that
 * does not keep them across transactions (PgBouncer in transaction mode without
 * `max_prepared_statements`, its default before 1.24).
 */
function preparing<T extends postgres.Sql | postgres.TransactionSql>(sql: T): T {
  function unsafe(query: string, params?: Params | QueryOptions, options?: QueryOptions) {
    // postgres.js's own two-argument form: unsafe(query, options).
    if (options === undefined && params !== undefined && !Array.isArray(params)) [options, params] = [params, []];
    const values = (params ?? []) as Params;
    return sql.unsafe(query, values, {
      ...options,
      prepare: options?.prepare === true || (values.length > 0 && values.length <= PREPARE_MAX_PARAMETERS),
      onexecute: options?.onexecute ?? alone,
    } as QueryOptions);
  }
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
