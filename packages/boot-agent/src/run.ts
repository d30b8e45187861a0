/**
 * Runs the workflow: the command from metadata, or the entrypoint of the bundle's
 * swarm.json, in the unpacked directory. Secrets reach it as environment variables only;
 * the agent's own settings (token, URLs) do not. Signals are forwarded.
 *
 * An agent running as root runs the workflow as an unprivileged user (SWARM_RUNTIME_USER,
 * never the metadata's choice): another uid cannot read the agent's /proc/<pid>/environ or
 * /proc/<pid>/mem, signal it, or write the bundle's files, which stay root's (0644/0755).
 * The workflow directory becomes sticky and world-writable (1777) so that the workflow can
 * still create files in it, as it could as root, but not replace or delete the bundle's.
 */
import fsSync from 'node:fs';
import os from 'node:os';
import fs from 'node:fs/promises';
import path from 'node:path';
import { bundleManifest } from '@swarm/sdk/metadata';
import { builtin } from './builtins.js';
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

const PASSWD = '/etc/passwd';

/** A user the workflow runs as, from /etc/passwd. */
export type RuntimeUser = { name: string; uid: number; gid: number; home: string };

/**
 * Who runs the workflow: the agent's own user, unless the agent is root; then `name`,
 * looked up in /etc/passwd (Node has no getpwnam). A name that is not there stops the
 * boot: running the workflow as root instead would hand it the agent's credential.
 */
export function runtimeUser(name: string): RuntimeUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  let text: string;
  try {
    text = fsSync.readFileSync(PASSWD, 'utf8');
  } catch (err) {
    throw new AgentError(
      'bad_metadata',
      `cannot read ${PASSWD} to find the runtime user "${name}": ${(err as NodeJS.ErrnoException).code}`,
    );
  }
  for (const line of text.split('\n')) {
    const [user, , uid, gid, , home] = line.split(':');
    if (user === name && /^\d+$/.test(uid ?? '') && /^\d+$/.test(gid ?? '')) {
      return { name, uid: Number(uid), gid: Number(gid), home: home || '/' };
    }
  }
  throw new AgentError('bad_metadata', `the runtime user "${name}" is not in ${PASSWD} (SWARM_RUNTIME_USER, --runtime-user)`);
}

/** Lets `user` create files in the workflow directory, not touch the bundle's: root's, mode 1777 (sticky). */
export async function openWorkflowDir(dir: string, user: RuntimeUser | undefined): Promise<void> {
  if (user && user.uid !== 0) await fs.chmod(dir, 0o1777);
}

/** How the runtime's output leaves it (output.ts), and how it is stopped (cancel, timeout). */
export type RuntimeIo = {
  output: {
    /** False: wait for `drained` before more (the console is slow, as it would be for the workflow itself). */
    write(stream: 'stdout' | 'stderr', chunk: Buffer): boolean;
    drained(stream: 'stdout' | 'stderr', resume: () => void): void;
    end(stream: 'stdout' | 'stderr'): void;
  };
  /** After SIGTERM, the runtime has this long before SIGKILL. */
  graceMs: number;
};

/** The runtime's end: its exit code, and why the agent stopped it, if it did. */
export type RuntimeEnd = { code: number; stoppedFor?: string };

/** Streams still open this long after the runtime exited (a background child holds them) are closed. */
const DRAIN_AFTER_EXIT_MS = 3000;

/**
 * Runs the workflow in a process group of its own, its stdout and stderr piped to
 * `io.output` (never straight to the console: output.ts masks them first). `onStart`
 * gets a `stop(reason)` that sends the group SIGTERM, then SIGKILL after the grace period.
 */
export function runWorkflow(
  command: string[],
  cwd: string,
  secrets: Record<string, string>,
  user: RuntimeUser | undefined,
  onStart: (pid: number, stop: (reason: string) => void) => void,
  io: RuntimeIo,
): Promise<RuntimeEnd> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!AGENT_VARIABLES.test(k)) env[k] = v;
  if (user) Object.assign(env, { HOME: user.home, USER: user.name, LOGNAME: user.name });
  Object.assign(env, secrets);
  return new Promise((resolve, reject) => {
    // With uid and gid, libuv also drops the agent's supplementary groups (setgroups(0)).
    const identity = user ? { uid: user.uid, gid: user.gid } : {};
    const child = builtin('node:child_process').spawn(command[0]!, command.slice(1), {
      cwd,
      env,
      stdio: ['inherit', 'pipe', 'pipe'],
      detached: true,
      ...identity,
    });
    const signalGroup = (signal: NodeJS.Signals) => {
      try {
        process.kill(-child.pid!, signal);
      } catch {
        child.kill(signal);
      }
    };
    let stoppedFor: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (reason: string) => {
      if (stoppedFor !== undefined || child.exitCode !== null || child.signalCode !== null) return;
      stoppedFor = reason;
      signalGroup('SIGTERM');
      killTimer = setTimeout(() => signalGroup('SIGKILL'), io.graceMs);
      killTimer.unref();
    };
    const forward = (signal: NodeJS.Signals) => () => signalGroup(signal);
    const handlers = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    for (const name of ['stdout', 'stderr'] as const) {
      const stream = child[name]!;
      stream.on('data', (chunk: Buffer) => {
        if (io.output.write(name, chunk)) return;
        stream.pause();
        io.output.drained(name, () => stream.resume());
      });
      stream.once('close', () => io.output.end(name));
    }
    child.once('spawn', () => onStart(child.pid!, stop));
    child.once('error', (err: NodeJS.ErrnoException) => {
      for (const [s, h] of handlers) process.off(s, h);
      reject(new AgentError('bad_metadata', `cannot start the runtime "${command[0]}": ${err.code ?? err.message}`));
    });
    child.once('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      if (killTimer) clearTimeout(killTimer);
      const end: RuntimeEnd = { code: code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0) };
      if (stoppedFor !== undefined) end.stoppedFor = stoppedFor;
      const open = [child.stdout!, child.stderr!].filter((s) => !s.closed);
      if (!open.length) return resolve(end);
      let waiting = open.length;
      const drained = () => {
        if (--waiting === 0) {
          clearTimeout(giveUp);
          resolve(end);
        }
      };
      const giveUp = setTimeout(() => {
        for (const s of open) s.destroy();
      }, DRAIN_AFTER_EXIT_MS);
      for (const s of open) s.once('close', drained);
    });
  });
}
