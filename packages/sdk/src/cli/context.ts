/**
 * What every command gets: the global options (--url, --token, --json), the API client
 * they make, and output through the streams buildProgram was given, so a command runs
 * the same in the `swarm` process and in-process in a test.
 */
import type { Command } from 'commander';
import { createSwarmClient, type SwarmClient } from '../client.js';
import { SwarmError } from '../errors.js';
import { escapeForTerminal, formatTable } from './format.js';

export type CliIo = {
  stdout: NodeJS.WritableStream;
  /** Errors and progress; a bar is drawn when it is a terminal. */
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  /** An exit status a command sets without failing: doctor's failed check, the workflow's of spawn --wait. */
  exitCode?: number;
};

export type Cli = {
  io: CliIo;
  json(): boolean;
  /** A client for --url with --token; fails without a token. */
  client(): SwarmClient;
  /** Prints `value` as one JSON document with --json, else the human rendering. */
  output<T>(value: T, human: (v: T) => void): void;
  /** One line of human output on stdout, escaped for the terminal (see escapeForTerminal). */
  print(line: string): void;
  /** Rows in aligned columns on stdout, `(none)` when there are none; cells escaped for the terminal. */
  table<T>(rows: T[], columns: Array<[string, (row: T) => string]>): void;
};

type GlobalOptions = { url: string; token?: string; json?: boolean };

export function createCli(program: Command, io: CliIo): Cli {
  const globals = () => program.opts<GlobalOptions>();
  const write = (line: string) => void io.stdout.write(`${line}\n`);
  const print = (line: string) => write(escapeForTerminal(line));
  return {
    io,
    json: () => !!globals().json,
    client() {
      const { url, token } = globals();
      if (!token)
        throw new SwarmError(
          'UNAUTHORIZED',
          'no API token',
          'set SWARM_TOKEN or pass --token (the registry prints its admin token at first start)',
        );
      return createSwarmClient({ url, token });
    },
    output(value, human) {
      if (globals().json) io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else human(value);
    },
    print,
    table: (rows, columns) => formatTable(rows, columns).forEach(write),
  };
}
