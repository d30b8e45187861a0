/** Reading the docs in tests, so that what they say is checked against the code. */

export type FencedBlock = { marker: string; lang: string; body: string };

/** Every fenced block with a language, with the HTML comment on the line right above it (if any). */
export function fencedBlocks(markdown: string): FencedBlock[] {
  return [...markdown.matchAll(/(?:<!-- (.*?) -->\n)?```(\w+)\n([\s\S]*?)```/g)].map((m) => ({
    marker: m[1] ?? '',
    lang: m[2]!,
    body: m[3]!,
  }));
}

/** Backticked variable names (`LIKE_THIS`) in the first column of markdown table rows. */
export function tableVariables(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/^\| ([^|]+) \|/gm)].flatMap((m) => [...m[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((v) => v[1]!)));
}

/** The text of a `## heading` section, up to the next `## `. */
export function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`no section "## ${heading}"`);
  const end = markdown.indexOf('\n## ', start + 4);
  return markdown.slice(start, end < 0 ? undefined : end);
}
