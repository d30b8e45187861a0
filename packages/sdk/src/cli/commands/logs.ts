/**
 * `swarm logs`: an execution's output lines interleaved with its lifecycle events, in order;
 * -f follows live over the SSE subscription; history comes a page at a time.
 */
import { type Command, Option } from 'commander';
import type { ExecutionEvent } from '../../contract/index.js';
import { SwarmError } from '../../errors.js';
import type { Cli } from '../context.js';

type OutputLine = { stream?: string; text?: string; at?: string };
type LogsOptions = { follow?: boolean; since?: Since; outputOnly?: boolean; eventsOnly?: boolean };
/** `--since`: from an event sequence number (inclusive), or from a time. */
type Since = { seq: number } | { time: number };

const parseSince = (text: string): Since => {
  if (/^\d{1,9}$/.test(text)) return { seq: Number(text) };
  const time = Date.parse(text);
  if (/^\d{4}-\d{2}-\d{2}/.test(text) && !Number.isNaN(time)) return { time };
  throw new SwarmError('INVALID_INPUT', `--since must be an event sequence number or an ISO time, not "${text}"`);
};

export function registerLogsCommand(program: Command, cli: Cli): void {
  program
    .command('logs <execution-id>')
    .description("an execution's output and events, in order; -f follows them until it finishes")
    .option('-f, --follow', 'keep streaming until the execution finishes')
    .option('--since <seq|time>', 'from this event sequence number, or this ISO time (e.g. 2026-11-29T16:00:00Z)', parseSince)
    .addOption(new Option('--output-only', 'only what the workflow printed').conflicts('eventsOnly'))
    .addOption(new Option('--events-only', 'only lifecycle events').conflicts('outputOnly'))
    .addHelpText('after', '\nWith --json: one JSON event per line (output events carry their lines in data.lines).')
    .action(async (id: string, o: LogsOptions) => {
      const c = cli.client();
      const since = o.since;
      const show = (e: ExecutionEvent) => {
        const isOutput = e.type === 'output';
        if ((o.outputOnly && !isOutput) || (o.eventsOnly && (isOutput || e.type === 'output_truncated'))) return;
        if (since && 'time' in since && Date.parse(e.createdAt) < since.time) return;
        if (cli.json()) {
          cli.io.stdout.write(`${JSON.stringify(e)}\n`);
          return;
        }
        if (!isOutput) {
          cli.print(`${e.createdAt}  #${e.seq} ${e.type}${Object.keys(e.data).length ? ` ${JSON.stringify(e.data)}` : ''}`);
          return;
        }
        for (const line of (e.data.lines ?? []) as OutputLine[]) {
          cli.print(`${line.at ?? e.createdAt}  ${line.stream === 'stderr' ? 'err' : 'out'} | ${line.text ?? ''}`);
        }
      };
      const afterSeq = since && 'seq' in since ? since.seq - 1 : -1;
      if (o.follow) await c.watchExecution(id, show, { afterSeq });
      else for await (const e of c.executionEvents(id, { afterSeq })) show(e);
    });
}
