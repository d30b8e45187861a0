/** One row of the results table: our measurement, its baseline from the same run, and the target. */
import type { Summary } from './stats.js';

export type Target = {
  op: '>=' | '<=';
  value: number /** ratio: ours/baseline medians; value: ours' median itself */;
  on: 'ratio' | 'value';
};

export type Row = {
  id: string;
  what: string;
  unit: string;
  /** What `baseline` measured. */
  baselineWhat?: string;
  baseline?: Summary;
  ours: Summary;
  ratio?: number;
  target?: Target;
  met?: boolean;
  /** Extra numbers for the record: floors measured alone, error counts, settings. */
  notes?: Record<string, unknown>;
};

export function row(r: Omit<Row, 'ratio' | 'met'>): Row {
  const ratio = r.baseline ? r.ours.median / r.baseline.median : undefined;
  let met: boolean | undefined;
  if (r.target) {
    const v = r.target.on === 'ratio' ? ratio : r.ours.median;
    met = v !== undefined && (r.target.op === '>=' ? v >= r.target.value : v <= r.target.value);
  }
  return { ...r, ratio, met };
}

export type FigureContext = {
  log: (line: string) => void;
  /** Repetitions for short figures (`--runs`). */
  runs: number;
  /** Seconds per HTTP load run (`--duration`). */
  duration: number;
};
