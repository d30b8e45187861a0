/** Summaries of repeated measurements: the median is the figure, min and max show the noise. */
export type Summary = { runs: number; min: number; median: number; max: number; values: number[] };

export function summarize(values: number[]): Summary {
  if (values.length === 0) throw new Error('no measurements');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { runs: values.length, min: sorted[0]!, median, max: sorted[sorted.length - 1]!, values };
}

/** The p-th percentile (0–100) of unsorted samples, nearest rank. */
export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const MiB = 1024 * 1024;
