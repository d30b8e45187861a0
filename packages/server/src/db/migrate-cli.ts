/** `pnpm db:migrate`: applies drizzle/ migrations to DATABASE_URL (the server also does this at start-up). */
import { loadConfig } from '../config.js';
import { migrateDatabase } from './migrate.js';

const config = loadConfig();
if (!config.databaseUrl) {
  console.error('db:migrate: DATABASE_URL is not set (the embedded database migrates itself when the server starts)');
  process.exit(64);
}
await migrateDatabase(config.databaseUrl);
console.log('db:migrate: all migrations applied');
