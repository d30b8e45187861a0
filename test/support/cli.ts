/** Runs the `swarm` CLI from source (what `pnpm swarm` runs bundled), or in-process through buildProgram(). */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { buildProgram, type CliIo, exitStatusOf } from '../../packages/sdk/src/cli/program.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export type CliResult = { code: number; stdout: string; stderr: string };

export function swarm(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      path.join(root, 'node_modules/.bin/tsx'),
      [path.join(root, 'packages/sdk/src/cli/main.ts'), ...args],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** One command line in this process, as cli/main.ts runs it. Pass --url and --token: SWARM_URL and SWARM_TOKEN would come from this process's environment. */
export async function swarmInProcess(args: string[]): Promise<CliResult> {
  const result = { code: 0, stdout: '', stderr: '' };
  const collect = (key: 'stdout' | 'stderr') =>
    new Writable({
      write(chunk, _encoding, done) {
        result[key] += chunk.toString();
        done();
      },
    });
  const io: CliIo = { stdout: collect('stdout'), stderr: collect('stderr') };
  try {
    await buildProgram(io).parseAsync(args, { from: 'user' });
    result.code = io.exitCode ?? 0;
  } catch (err) {
    result.code = exitStatusOf(err, io.stderr);
  }
  return result;
}

/**
 * In-process commands against one registry: `swarm(args)` adds `auth` (--url, --token);
 * `json(args)` adds --json, expects success and parses stdout.
 */
export function inProcessCli(auth: () => string[]) {
  const swarm = (args: string[]) => swarmInProcess([...args, ...auth()]);
  const json = async (args: string[]) => {
    const r = await swarm([...args, '--json']);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  };
  return { swarm, json };
}
