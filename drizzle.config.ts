import { defineConfig } from 'drizzle-kit';

// `pnpm db:generate --name <name>` writes a migration for schema changes into drizzle/.
export default defineConfig({
  dialect: 'postgresql',
  schema: './packages/server/src/db/schema.ts',
  out: './drizzle',
});
