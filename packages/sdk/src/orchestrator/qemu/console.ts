/**
 * What the host reads from the VM: the serial console (chunks of text → lines without
 * their CR/LF, the last 4 MiB kept, the markers /init and the boot agent print turned into
 * boot timings) and the exit channel (the exit code). The console carries the workload's
 * output too, so nothing on it counts as an exit code. No process here
 * (test/qemu-args.test.ts).
 */
import { AGENT_LOG_PREFIX, AGENT_START_MARKER, EXIT_MARKER, INIT_MARKER } from '../../vm-console.js';
import type { QemuVmTimings } from './types.js';

const CONSOLE_CAP = 4 * 1024 * 1024;
/** A "line" longer than this is passed on as it is, so a guest printing no newline cannot grow us. */
const LINE_CAP = 65_536;
/** The exit channel's first line, once complete: /init writes nothing else there. */
const EXIT_LINE = new RegExp(`^${EXIT_MARKER}(\\d+)\\r*\\n`);
const UNPACKED = `${AGENT_LOG_PREFIX}unpacked `;

export type ConsoleMarker = { kind: 'init'; guestUptimeMs?: number } | { kind: 'agent-start' } | { kind: 'unpacked' };

/** What one console line marks, if anything. */
export function consoleMarker(line: string): ConsoleMarker | undefined {
  if (line.startsWith(INIT_MARKER)) {
    const up = /uptime=([\d.]+)/.exec(line);
    return up ? { kind: 'init', guestUptimeMs: Math.round(Number(up[1]) * 1000) } : { kind: 'init' };
  }
  if (line === AGENT_START_MARKER) return { kind: 'agent-start' };
  return line.startsWith(UNPACKED) ? { kind: 'unpacked' } : undefined;
}

/** The exit code in what the exit channel carried so far: its first line, `SWARM_EXIT=<code>`, once complete. */
export function exitChannelCode(text: string): number | undefined {
  const exit = EXIT_LINE.exec(text);
  return exit ? Number(exit[1]) : undefined;
}

/**
 * Reads one boot's console. `since()` is the time since QEMU started; `onLine` gets every
 * line (a throwing listener is ignored: it must not take the VM down).
 */
export class ConsoleReader {
  text = '';
  readonly timings: QemuVmTimings = {};
  private partial = '';

  constructor(private readonly o: { since: () => number; onLine?: (line: string) => void }) {}

  push(chunk: string): void {
    this.timings.firstOutputMs ??= this.o.since();
    this.text += chunk;
    if (this.text.length > CONSOLE_CAP) this.text = this.text.slice(-CONSOLE_CAP);
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop()!;
    if (this.partial.length > LINE_CAP) {
      lines.push(this.partial);
      this.partial = '';
    }
    for (const l of lines) this.line(l);
  }

  /** The console closed: a last line without a newline still counts. */
  end(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
  }

  private line(raw: string): void {
    const text = raw.replace(/\r+$/, '');
    const marker = consoleMarker(text);
    const t = this.timings;
    if (marker?.kind === 'init') {
      t.bootToInitMs ??= this.o.since();
      if (marker.guestUptimeMs !== undefined) t.guestUptimeAtInitMs = marker.guestUptimeMs;
    } else if (marker?.kind === 'agent-start') t.agentStartMs ??= this.o.since();
    else if (marker?.kind === 'unpacked') t.unpackedMs ??= this.o.since();
    try {
      this.o.onLine?.(text);
    } catch {
      // a faulty listener must not take the VM down with it
    }
  }
}
