/**
 * Runs the workflow: the command from metadata, or the entrypoint of the bundle's
 * swarm.json, in the unpacked directory. Secrets reach it as environment variables only;
 * the agent's own settings (token, URLs) do not. Signals are forwarded.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import fs from 'node:fs/promises';
import path from 'node:path';
import { bundleManifest } from '@swarm/sdk/metadata';
import { AgentError } from './errors.js';

/** The agent's own variables: not the workflow's business. */
const AGENT_VARIABLES = /^(SWARM_|BUNDLE_)/;

export async function runtimeCommand(workflowDir: string, fromMetadata: string[] | undefined): Promise<string[]> {
  if (fromMetadata) return fromMetadata;
  const text = await fs.readFile(path.join(workflowDir, 'swarm.json'), 'utf8').catch(() => null);
  if (text === null) {
    throw new AgentError(
      'bad_metadata',
      "no runtime command: give one in the metadata (runtime.command, SWARM_RUNTIME_CMD or after --), or an entrypoint in the bundle's swarm.json",
    );
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch {
    throw new AgentError('unsafe_bundle', "the bundle's swarm.json is not valid JSON");
  }
  const parsed = bundleManifest.safeParse(manifest);
  if (!parsed.success)
    throw new AgentError(
      'unsafe_bundle',
      `the bundle's swarm.json: ${parsed.error.issues[0]!.path.join('.')}: ${parsed.error.issues[0]!.message}`,
    );
  return parsed.data.entrypoint;
}

export function runWorkflow(
  command: string[],
  cwd: string,
  secrets: Record<string, string>,
  onStart: (pid: number) => void,
): Promise<number> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!AGENT_VARIABLES.test(k)) env[k] = v;
  Object.assign(env, secrets);
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), { cwd, env, stdio: 'inherit' });
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
    const handlers = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    child.once('spawn', () => onStart(child.pid!));
    child.once('error', (err: NodeJS.ErrnoException) => {
      for (const [s, h] of handlers) process.off(s, h);
      reject(new AgentError('bad_metadata', `cannot start the runtime "${command[0]}": ${err.code ?? err.message}`));
    });
    child.once('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
    });
  });
}
