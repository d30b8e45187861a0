import type { Command } from 'commander';
import type { Cli } from '../context.js';
import { asNewWorkflow } from '../options.js';

export function registerWorkflowCommands(program: Command, cli: Cli): void {
  const workflows = program.command('workflows').description('manage workflows');
  workflows
    .command('create')
    .description('create a workflow')
    .argument('<tenant/name>', "the tenant and the new workflow's name", asNewWorkflow('workflow'))
    .action(async (ref: { tenant: string; name: string }) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.workflows.create.mutate(ref)), (w) =>
        cli.print(`created workflow ${w.tenant}/${w.name} (${w.id})`),
      );
    });
  workflows
    .command('list <tenant>')
    .description("list a tenant's workflows")
    .action(async (tenant: string) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.workflows.list.query({ tenant })), (rows) =>
        cli.table(rows, [
          ['NAME', (w) => `${w.tenant}/${w.name}`],
          ['ACTIVE', (w) => (w.activeVersion === null ? '-' : String(w.activeVersion))],
          ['ID', (w) => w.id],
        ]),
      );
    });
}
