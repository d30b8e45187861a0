import type { Command } from 'commander';
import type { TokenScope } from '../../contract/index.js';
import type { Cli } from '../context.js';
import { asScope, valueOption } from '../options.js';

export function registerTokenCommands(program: Command, cli: Cli): void {
  const tokens = program.command('tokens').description('manage API tokens (admin)');
  tokens
    .command('create')
    .description('mint a token; its value is shown this once')
    .addOption(valueOption('--scope <scope>', 'admin, orchestrator, or tenant:<slug>', asScope).makeOptionMandatory())
    .option('--name <name>', 'a name to recognise it by')
    .action(async (o: { scope: TokenScope; name?: string }) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.tokens.create.mutate({ scope: o.scope, name: o.name })), (t) => {
        cli.print(`created token "${t.name}" (${t.id}) with scope ${t.scope}; it is shown only now:`);
        cli.print(t.token);
      });
    });
  tokens
    .command('list')
    .description('list tokens (never their values)')
    .action(async () => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.tokens.list.query()), (rows) =>
        cli.table(rows, [
          ['ID', (t) => t.id],
          ['NAME', (t) => t.name],
          ['SCOPE', (t) => t.scope],
          ['REVOKED', (t) => t.revokedAt ?? '-'],
        ]),
      );
    });
  tokens
    .command('revoke <id>')
    .description('revoke a token')
    .action(async (id: string) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.tokens.revoke.mutate({ id })), (t) => cli.print(`revoked token "${t.name}" (${t.id})`));
    });
}
