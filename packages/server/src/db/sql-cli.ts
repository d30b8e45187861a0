/**
 * `pnpm db:sql [--prefix 016] [-o file]`: writes the whole schema as one idempotent SQL
 * file for another migration runner (see schema-sql.ts). Without options it prints to
 * stdout; `--prefix 016` writes 016_workflow_bundles.sql in the current directory;
 * `-o file` writes there.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { readMigrations } from './migration-files.js';
import { schemaSql } from './schema-sql.js';

const usage = 'usage: pnpm db:sql [--prefix <digits>] [-o <file>]';
const args = z.object({
  prefix: z
    .string()
    .regex(/^\d{1,6}$/, '--prefix takes digits, e.g. 016')
    .optional(),
  output: z.string().min(1).optional(),
});

let options: z.infer<typeof args>;
try {
  const { values } = parseArgs({
    options: { prefix: { type: 'string' }, output: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(
      `${usage}\n\nWrites the whole schema (every migration in drizzle/) as one idempotent SQL file.\n  --prefix 016   write 016_workflow_bundles.sql in the current directory\n  -o <file>      write to <file> (default without --prefix: stdout)`,
    );
    process.exit(0);
  }
  const { help: _help, ...rest } = values;
  const parsed = args.safeParse(rest);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => i.message).join('; '));
  options = parsed.data;
} catch (err) {
  console.error(`db:sql: ${(err as Error).message}\n${usage}`);
  process.exit(64);
}

const name = `${options.prefix ? `${options.prefix}_` : ''}workflow_bundles.sql`;
const text = schemaSql(readMigrations(), { name });
// pnpm runs scripts from the workspace root; INIT_CWD is where the command was typed.
const file = options.output ?? (options.prefix ? name : undefined);
if (file) {
  const target = path.resolve(process.env.INIT_CWD ?? process.cwd(), file);
  try {
    await fs.writeFile(target, text);
  } catch (err) {
    console.error(`db:sql: cannot write ${target}: ${(err as Error).message}`);
    process.exit(1);
  }
  console.error(`db:sql: wrote ${target}`);
} else {
  process.stdout.write(text);
}
