/**
 * Characters a terminal acts on rather than shows: C0 controls (newlines, ESC, …), DEL, C1
 * controls, bidi embeddings, overrides, isolates and marks, zero-width and other invisible
 * format characters (a name could pass for another), lone surrogates, and the Unicode line and
 * paragraph separators; a backslash too, so an escaped text cannot pass for another.
 */
const UNSAFE_FOR_TERMINALS =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\u206a-\u206f\ufeff\\]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const NAMED_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };

/**
 * `text` safe to print on a terminal: every character it would act on is shown as an escape
 * (`\n`, `\x1b`, `\u202e`, `\\`), so a user-supplied field can neither change colours, move
 * the cursor, reorder what follows, nor forge a line. Human output only: --json prints values exactly.
 */
export function escapeForTerminal(text: string): string {
  return text.replace(
    UNSAFE_FOR_TERMINALS,
    (c) =>
      NAMED_ESCAPES[c] ??
      (c.charCodeAt(0) <= 0xff ? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}` : `\\u${c.charCodeAt(0).toString(16)}`),
  );
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** The lines of a table: a header row, then one per row, columns padded to their widest cell; cells escaped for the terminal. */
export function formatTable<T>(rows: T[], columns: Array<[string, (row: T) => string]>): string[] {
  if (rows.length === 0) return ['(none)'];
  const cells = [columns.map(([h]) => h), ...rows.map((r) => columns.map(([, f]) => escapeForTerminal(f(r))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}
