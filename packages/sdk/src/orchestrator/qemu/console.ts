/**
 * The serial console as the host reads it: chunks of text → lines without their CR/LF,
 * the last 4 MiB kept, and the markers /init and the boot agent print (vm-console.ts)
 * turned into the exit code and boot timings. No process here (test/qemu-args.test.ts).
 */
import { AGENT_LOG_PREFIX, AGENT_START_MARKER, EXIT_MARKER, INIT_MARKER } from '../../vm-console.js';
import type { QemuVmTimings } from './types.js';

const CONSOLE_CAP = 4 * 1024 * 1024;
/** A "line" longer than this is passed on as it is, so a guest printing no newline cannot grow us. */
const LINE_CAP = 65_536;
const EXIT_LINE = new RegExp(`^${EXIT_MARKER}(\\d+)$`);
const UNPACKED = `${AGENT_LOG_PREFIX}unpacked `;

export type ConsoleMarker =
  | { kind: 'init'; guestUptimeMs?: number }
  | { kind: 'agent-start' }
  | { kind: 'unpacked' }
  | { kind: 'exit'; code: number };

/** What one console line marks, if anything. */
export function consoleMarker(line: string): ConsoleMarker | undefined {
  if (line.startsWith(INIT_MARKER)) {
    const up = /uptime=([\d.]+)/.exec(line);
    return up ? { kind: 'init', guestUptimeMs: Math.round(Number(up[1]) * 1000) } : { kind: 'init' };
  }
  if (line === AGENT_START_MARKER) return { kind: 'agent-start' };
  if (line.startsWith(UNPACKED)) return { kind: 'unpacked' };
  const exit = EXIT_LINE.exec(line);
  return exit ? { kind: 'exit', code: Number(exit[1]) } : undefined;
}

/**
 * Reads one boot's console. `since()` is the time since QEMU started; `onLine` gets every
 * line (a throwing listener is ignored: it must not take the VM down), `onExit` the first
 * SWARM_EXIT code.
 */
export class ConsoleReader {
  text = '';
  exitCode: number | undefined;
  readonly timings: QemuVmTimings = {};
  private partial = '';

  constructor(private readonly o: { since: () => number; onLine?: (line: string) => void; onExit?: (code: number) => void }) {}

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
    else if (marker?.kind === 'exit' && this.exitCode === undefined) {
      this.exitCode = marker.code;
      t.exitMarkerMs = this.o.since();
      this.o.onExit?.(marker.code);
    }
    try {
      this.o.onLine?.(text);
    } catch {
      // a faulty listener must not take the VM down with it
    }
  }
}
