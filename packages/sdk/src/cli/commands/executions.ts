/** What executions did: their list, one execution, and its events (followed live with -f). */
import type { Command } from 'commander';
import type { ExecutionEvent } from '../../contract/index.js';
import type { Cli } from '../context.js';
import { asCount, valueOption, WORKFLOW } from '../options.js';

const formatEvent = (e: ExecutionEvent) =>
  `${e.createdAt}  #${e.seq} ${e.type}${Object.keys(e.data).length ? ` ${JSON.stringify(e.data)}` : ''}`;

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

  program
    .command('logs <execution-id>')
    .description("an execution's events; -f follows them until it finishes")
    .option('-f, --follow', 'keep streaming new events')
    .action(async (id: string, o: { follow?: boolean }) => {
      const c = cli.client();
      if (!o.follow) {
        // Page by page: printed as they come, or gathered for --json's one document.
        const all: ExecutionEvent[] = [];
        for await (const e of c.executionEvents(id)) {
          if (cli.json()) all.push(e);
          else cli.print(formatEvent(e));
        }
        if (cli.json()) cli.output(all, () => {});
        return;
      }
      const seen: ExecutionEvent[] = [];
      await c.watchExecution(id, (e) => {
        seen.push(e);
        if (!cli.json()) cli.print(formatEvent(e));
      });
      if (cli.json()) cli.output(seen, () => {});
    });
}
