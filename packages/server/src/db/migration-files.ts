/**
 * The migrations in drizzle/ as drizzle's migrator sees them: read with drizzle's own
 * readMigrationFiles, so the hashes (sha256 of each file) and timestamps are exactly
 * what `migrate()` records in drizzle.__drizzle_migrations.
 */
import fs from 'node:fs';
import path from 'node:path';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { migrationsFolder } from './migrate.js';

export type MigrationFile = {
  /** File name without .sql, e.g. 0001_executions_agent_tokens. */
  tag: string;
  /** The journal's timestamp: drizzle applies a migration only if it is newer than the last one recorded. */
  folderMillis: number;
  hash: string;
  /** The statements, split at drizzle-kit's `--> statement-breakpoint` markers. */
  statements: string[];
};

export function readMigrations(folder = migrationsFolder): MigrationFile[] {
  const journal = JSON.parse(fs.readFileSync(path.join(folder, 'meta/_journal.json'), 'utf8')) as { entries: Array<{ tag: string }> };
  return readMigrationFiles({ migrationsFolder: folder }).map((m, i) => ({
    tag: journal.entries[i]!.tag,
    folderMillis: m.folderMillis,
    hash: m.hash,
    statements: m.sql.map((s) => s.trim()).filter(Boolean),
  }));
}
