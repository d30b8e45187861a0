/**
 * `swarm`: the registry's command line. Every command takes --json (one JSON document
 * on stdout, nothing else) and exits non-zero with a one-line error on failure. One
 * module per group of commands under commands/; buildProgram gives them all, writing
 * to the given streams, so a test can run any command in-process.
 */
import { Command, CommanderError, Option } from 'commander';
import { toSwarmError } from '../errors.js';
import { registerBundleCommands } from './commands/bundles.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerExecutionCommands } from './commands/executions.js';
import { registerGcCommand } from './commands/gc.js';
import { registerLogsCommand } from './commands/logs.js';
import { registerReleaseCommands } from './commands/releases.js';
import { registerSigningCommands } from './commands/signing.js';
import { registerSpawnCommands } from './commands/spawn.js';
import { registerTenantCommands } from './commands/tenants.js';
import { registerTokenCommands } from './commands/tokens.js';
import { registerWorkflowCommands } from './commands/workflows.js';
import { type CliIo, createCli } from './context.js';
import { escapeForTerminal } from './format.js';

export type { CliIo } from './context.js';

/** Every command; run one with `parseAsync`, which rejects on failure (see exitStatusOf). */
export function buildProgram(io: CliIo): Command {
  const program = new Command('swarm')
    .description('Command line for the Swarm bundle registry')
    .addOption(new Option('--url <url>', 'registry URL').env('SWARM_URL').default('http://127.0.0.1:3000'))
    .addOption(new Option('--token <token>', 'API token').env('SWARM_TOKEN'))
    .option('--json', 'print one JSON document on stdout and nothing else')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showHelpAfterError('(run with --help for usage)')
    // Commander's errors (usage, --help) are thrown, not exited on: the caller decides.
    .exitOverride();
  const cli = createCli(program, io);
  // In --help order.
  registerTenantCommands(program, cli);
  registerWorkflowCommands(program, cli);
  registerBundleCommands(program, cli);
  registerReleaseCommands(program, cli);
  registerGcCommand(program, cli);
  registerTokenCommands(program, cli);
  registerSigningCommands(program, cli);
  registerSpawnCommands(program, cli);
  registerExecutionCommands(program, cli);
  registerLogsCommand(program, cli);
  registerDoctorCommand(program, cli);
  return program;
}

/**
 * The exit status for what `parseAsync` rejected with, after printing it on `stderr` as
 * one line (commander has printed its own): 2 for bad usage or input, 1 otherwise, 0
 * for --help.
 */
export function exitStatusOf(err: unknown, stderr: NodeJS.WritableStream): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
  const e = toSwarmError(err);
  // The registry's messages quote what callers sent (names, refs): escaped like any other text.
  stderr.write(`swarm: ${escapeForTerminal(`${e.message}${e.hint ? ` (hint: ${e.hint})` : ''}`)}\n`);
  return e.code === 'INVALID_INPUT' ? 2 : 1;
}
