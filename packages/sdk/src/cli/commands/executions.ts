/** What executions did: their list, one execution; cancelling one. (Their events: logs.ts.) */
import type { Command } from 'commander';
import type { Cli } from '../context.js';
import { asCount, valueOption, WORKFLOW } from '../options.js';

export function registerExecutionCommands(program: Command, cli: Cli): void {
  const executions = program.command('executions').description('inspect executions');
  executions
    .command('list')
    .description("a workflow's executions, newest first")
    .argument(...WORKFLOW)
    .addOption(valueOption('--limit <n>', 'how many', asCount, '20'))
    .action(async (workflow: string, o: { limit: number }) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.executions.list.query({ workflow, limit: o.limit })), (rows) =>
        cli.table(rows, [
          ['ID', (e) => e.id],
          ['VERSION', (e) => `${e.version}${e.versionReason === 'canary' ? ' canary' : ''}`],
          ['STATUS', (e) => e.status],
          ['EXIT', (e) => (e.exitCode === null ? '-' : String(e.exitCode))],
          ['CREATED', (e) => e.createdAt],
          ['REASON', (e) => e.failureReason ?? ''],
        ]),
      );
    });
  executions
    .command('show <id>')
    .description('one execution')
    .action(async (id: string) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.executions.get.query({ id })), (e) => {
        for (const [k, v] of Object.entries(e)) cli.print(`${k.padEnd(14)} ${v ?? '-'}`);
      });
    });

  executions
    .command('cancel <id>')
    .description('stop an execution: a pending one at once, a running one through its agent (SIGTERM, then SIGKILL)')
    .action(async (id: string) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.executions.cancel.mutate({ id })), (e) =>
        cli.print(
          e.status === 'cancelled'
            ? `cancelled execution ${e.id}`
            : `cancel requested for execution ${e.id} (${e.status}): its agent stops the workflow within a few seconds; follow with: swarm logs -f ${e.id}`,
        ),
      );
    });
}
