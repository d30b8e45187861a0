/**
 * Progress of long byte-counting phases (packing, hashing, uploading) on stderr: a bar
 * with bytes, rate and ETA on a terminal (cli-progress: it redraws at a bounded rate,
 * fits the line and computes the ETA), plain lines when stderr is not a terminal (one
 * every 2 s while a phase runs, and one when it ends), nothing with --json.
 */
import type { SingleBar } from 'cli-progress';
import { formatBytes } from './format.js';

export type PhaseProgress = { phase: string; bytes: number; total: number | undefined };

export type ProgressReporter = {
  /** Reports a phase's bytes so far; a new phase name ends the previous phase. */
  update(p: PhaseProgress): void;
  /** Ends the current phase: prints its final line, or only clears the bar when it `failed`. */
  end(failed?: boolean): void;
};

const LABELS: Record<string, string> = { pack: 'packing', hash: 'hashing', upload: 'uploading' };
const PLAIN_EVERY_MS = 2000;

const rate = (bytes: number, ms: number) => `${formatBytes(ms > 0 ? Math.round((bytes * 1000) / ms) : bytes)}/s`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export async function createProgress(opts: {
  json?: boolean;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}): Promise<ProgressReporter | undefined> {
  if (opts.json) return undefined;
  const stream = opts.stream ?? process.stderr;
  if (!stream.isTTY) return plainReporter(stream);
  // Loaded only for a terminal: other commands and scripts do not pay for it.
  const { default: cliProgress } = await import('cli-progress');
  return barReporter(stream, (options) => new cliProgress.SingleBar(options, cliProgress.Presets.shades_classic));
}

function plainReporter(stream: NodeJS.WritableStream): ProgressReporter {
  const now = Date.now;
  let phase: { name: string; start: number; lastLine: number; bytes: number } | undefined;
  const line = (s: string) => stream.write(`${s}\n`);
  const end = (failed?: boolean) => {
    if (!phase) return;
    const ms = now() - phase.start;
    if (!failed) line(`${LABELS[phase.name] ?? phase.name} done: ${formatBytes(phase.bytes)} in ${seconds(ms)} (${rate(phase.bytes, ms)})`);
    phase = undefined;
  };
  return {
    update(p) {
      if (phase?.name !== p.phase) {
        end();
        phase = { name: p.phase, start: now(), lastLine: now(), bytes: 0 };
      }
      phase.bytes = p.bytes;
      const t = now();
      if (t - phase.lastLine >= PLAIN_EVERY_MS) {
        phase.lastLine = t;
        const pct = p.total ? ` (${Math.floor((p.bytes * 100) / p.total)}%)` : '';
        line(
          `${LABELS[p.phase] ?? p.phase} ${formatBytes(p.bytes)}${p.total ? ` / ${formatBytes(p.total)}` : ''}${pct}, ${rate(p.bytes, t - phase.start)}`,
        );
      }
    },
    end,
  };
}

type BarOptions = { stream: NodeJS.WritableStream; format: string; hideCursor: boolean; barsize: number };

function barReporter(stream: NodeJS.WritableStream, newBar: (o: BarOptions) => SingleBar): ProgressReporter {
  const now = Date.now;
  let current: { name: string; bar: SingleBar; start: number } | undefined;
  const payload = (p: PhaseProgress, start: number) => ({
    label: (LABELS[p.phase] ?? p.phase).padEnd(9),
    done: formatBytes(p.bytes),
    size: p.total === undefined ? '?' : formatBytes(p.total),
    rate: rate(p.bytes, now() - start),
  });
  const end = () => {
    current?.bar.stop();
    current = undefined;
  };
  return {
    update(p) {
      if (current?.name !== p.phase) {
        end();
        const bar = newBar({
          stream,
          format: '{label} [{bar}] {percentage}% | {done} / {size} | {rate} | ETA {eta_formatted}',
          hideCursor: true,
          barsize: 30,
        });
        current = { name: p.phase, bar, start: now() };
        bar.start(Math.max(p.total ?? p.bytes, 1), 0, payload(p, current.start));
      }
      current.bar.update(p.bytes, payload(p, current.start));
    },
    end,
  };
}
