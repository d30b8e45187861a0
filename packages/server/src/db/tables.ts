/** The tables schema.ts declares, with their columns, as PostgreSQL names them (docs/architecture.md's diagram is checked against this). */
import { PgTable, getTableConfig } from 'drizzle-orm/pg-core';
import * as schema from './schema.js';

export function schemaTables(): Array<{ name: string; columns: string[] }> {
  const tables: unknown[] = Object.values(schema).filter((v) => v instanceof PgTable);
  return tables.map((t) => getTableConfig(t as PgTable)).map((c) => ({ name: c.name, columns: c.columns.map((col) => col.name) }));
}
