/**
 * One QEMU process from start to end: its serial console on stdout read by a
 * ConsoleReader, the exit channel (the second serial port) on a socket of its own, a hard
 * time limit, a grace period to power off after the exit code arrived, abort, and nothing
 * left behind (QEMU and its per-connection forwarders share a process group that is killed
 * at the end, and when this process exits).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { EXIT_CHANNEL_FD } from './args.js';
import { ConsoleReader, exitChannelCode } from './console.js';
import { QemuVmError, type QemuVmTimings } from './types.js';

export type Outcome = { exitCode?: number; console: string; durationMs: number; timings: QemuVmTimings; qemuStatus: string };

/** Runs QEMU to its end (or kills it). Rejects only when it was killed before the exit code arrived. */
export function superviseQemu(
  qemu: string,
  args: string[],
  o: { timeoutMs: number; exitGraceMs: number; onLine?: (line: string) => void; signal?: AbortSignal },
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const since = () => Math.round(performance.now() - started);
    let failure: Error | undefined;
    let stderr = '';
    // Own process group, so killing it also ends the per-connection forwarders QEMU started.
    const stdio = Array.from({ length: EXIT_CHANNEL_FD + 1 }, () => 'pipe' as const);
    const child: ChildProcess = spawn(qemu, args, { stdio, detached: true });
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const onProcessExit = () => kill();
    process.once('exit', onProcessExit);
    const fail = (err: Error) => {
      failure ??= err;
      kill();
    };
    const hardTimer = setTimeout(() => fail(new Error(`the VM did not finish within ${o.timeoutMs} ms; QEMU killed`)), o.timeoutMs);
    let graceTimer: NodeJS.Timeout | undefined;
    const onAbort = () => fail(new Error('aborted'));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) onAbort();

    const reader = new ConsoleReader({ since, onLine: o.onLine });
    child.stdout!.on('data', (chunk: Buffer) => reader.push(chunk.toString('utf8')));
    let exitChannel = '';
    let exitCode: number | undefined;
    (child.stdio[EXIT_CHANNEL_FD] as Readable).on('data', (chunk: Buffer) => {
      if (exitCode !== undefined || exitChannel.length > 1024) return; // /init writes one short line
      exitChannel += chunk.toString('latin1');
      exitCode = exitChannelCode(exitChannel);
      if (exitCode === undefined) return;
      reader.timings.exitMarkerMs = since();
      graceTimer = setTimeout(kill, o.exitGraceMs);
    });
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8000)));
    child.stdin!.on('error', () => {}); // never written; QEMU may close it
    child.once('error', (err) => fail(err));
    child.once('close', (code, signal) => {
      clearTimeout(hardTimer);
      clearTimeout(graceTimer);
      o.signal?.removeEventListener('abort', onAbort);
      process.off('exit', onProcessExit);
      kill(); // stray forwarders, if any
      reader.end();
      const durationMs = since();
      const { timings, text } = reader;
      if (timings.exitMarkerMs !== undefined) timings.shutdownMs = durationMs - timings.exitMarkerMs;
      const qemuStatus = signal ? `QEMU killed by ${signal}` : `QEMU exited with ${code}${stderr.trim() ? `: ${stderr.trim()}` : ''}`;
      if (failure && exitCode === undefined) {
        reject(new QemuVmError(`${failure.message} (${qemuStatus}); console tail:\n${text.slice(-3000)}`, text, durationMs));
        return;
      }
      resolve({ exitCode, console: text, durationMs, timings, qemuStatus });
    });
  });
}
