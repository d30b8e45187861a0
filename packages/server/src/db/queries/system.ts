/** What the health check and `swarm doctor` ask the database about itself. */
import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../client.js';

export async function serverVersion(db: DbOrTx): Promise<string | undefined> {
  const rows = await db.execute<{ server_version: string }>(sql`show server_version`);
  return rows[0]?.server_version;
}

/** Hashes of the migrations drizzle's migrator recorded, oldest first (fails with 42P01 before the first). */
export async function appliedMigrationHashes(db: DbOrTx): Promise<string[]> {
  const rows = await db.execute<{ hash: string }>(sql`select hash from drizzle.__drizzle_migrations order by created_at`);
  return rows.map((r) => r.hash);
}

/** The cheapest round trip: is PostgreSQL answering? */
export async function ping(db: DbOrTx): Promise<void> {
  await db.execute(sql`select 1`);
}
