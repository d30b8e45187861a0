import type { Command } from 'commander';
import type { Cli } from '../context.js';

export function registerTenantCommands(program: Command, cli: Cli): void {
  const tenants = program.command('tenants').description('manage tenants');
  tenants
    .command('create <slug>')
    .description('create a tenant (admin)')
    .action(async (slug: string) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.tenants.create.mutate({ slug })), (t) => cli.print(`created tenant ${t.slug} (${t.id})`));
    });
  tenants
    .command('list')
    .description('list tenants')
    .action(async () => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.tenants.list.query()), (rows) =>
        cli.table(rows, [
          ['SLUG', (t) => t.slug],
          ['ID', (t) => t.id],
          ['CREATED', (t) => t.createdAt],
        ]),
      );
    });
}
