/** Starts a helper service as a child process and waits for its `READY <url>` line. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export type Service = { url: string; stop(): Promise<void> };

export function startService(
  name: string,
  command: string,
  args: string[],
  opts: { timeoutMs?: number; installHint?: string } = {},
): Promise<Service> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const hint = opts.installHint ? `; ${opts.installHint}` : '';
  // stdin stays open as a lifeline: it closes when this process dies, however it dies.
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const force = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      child.kill('SIGTERM');
    });
  return new Promise<Service>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} not ready after ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${name} (${err.message})${hint}`));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (code ${code}) before it was ready${hint}\n${stderr}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^READY (\S+)/.exec(line);
      if (!m) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve({ url: m[1]!, stop });
    });
  });
}
