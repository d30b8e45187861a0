import type { Command } from 'commander';
import type { Cli } from '../context.js';
import { SwarmError } from '../../errors.js';
import { asDuration, asNewWorkflow, WORKFLOW } from '../options.js';

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
    .command('set')
    .description("change a workflow's settings")
    .argument(...WORKFLOW)
    .option('--timeout <duration|none>', 'default timeout of its executions, from the workflow\'s start (e.g. 15m); "none" clears it')
    .action(async (workflow: string, o: { timeout?: string }) => {
      if (o.timeout === undefined) throw new SwarmError('INVALID_INPUT', 'nothing to set', 'give --timeout <duration|none>');
      const timeoutSeconds = o.timeout === 'none' ? null : asDuration('--timeout')(o.timeout);
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.workflows.set.mutate({ workflow, timeoutSeconds })), (w) =>
        cli.print(`${w.tenant}/${w.name}: timeout ${w.timeoutSeconds === null ? 'none' : `${w.timeoutSeconds}s`}`),
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
