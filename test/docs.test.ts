/**
 * The docs say what the code does: README's variable table is config.ts's, the
 * architecture's schema diagram is schema.ts's, and every doc linked from README exists.
 * (docs/deploy.md is run by test/deploy.test.ts.)
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { configVariables } from '../packages/server/src/config.js';
import { schemaTables } from '../packages/server/src/db/tables.js';
import { fencedBlocks, section, tableVariables } from './support/markdown.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file: string) => fs.readFile(path.join(root, file), 'utf8');

describe('README.md', () => {
  it('lists exactly the environment variables config.ts reads', async () => {
    expect(tableVariables(section(await read('README.md'), 'Configuration'))).toEqual(new Set(configVariables));
  });

  it('links docs that exist', async () => {
    const links = [...(await read('README.md')).matchAll(/\]\((docs\/[\w.-]+\.md)\)/g)].map((m) => m[1]!);
    expect(links).toEqual(expect.arrayContaining(['docs/architecture.md', 'docs/deploy.md', 'docs/operations.md']));
    for (const link of links) await expect(fs.access(path.join(root, link)), link).resolves.toBeUndefined();
  });
});

describe('docs/architecture.md', () => {
  it('has every table of schema.ts with exactly its columns in the schema diagram', async () => {
    const [diagram] = fencedBlocks(await read('docs/architecture.md')).filter(
      (b) => b.lang === 'mermaid' && b.body.trimStart().startsWith('erDiagram'),
    );
    expect(diagram).toBeDefined();
    const drawn = Object.fromEntries(
      [...diagram!.body.matchAll(/^ {2}(\w+) \{\n([\s\S]*?)^ {2}\}/gm)].map((m) => [
        m[1]!,
        m[2]!
          .trim()
          .split('\n')
          .map((line) => line.trim().split(/\s+/)[1]!),
      ]),
    );
    const tables = Object.fromEntries(schemaTables().map((t) => [t.name, t.columns]));
    expect(Object.keys(tables).length).toBeGreaterThan(5);
    expect(drawn).toEqual(tables);
  });

  it('names only paths that exist in its "where a change goes" table', async () => {
    const doc = await read('docs/architecture.md');
    const table = doc.slice(doc.indexOf('<!-- where-things-go'), doc.indexOf('\n\n', doc.indexOf('<!-- where-things-go')));
    const paths = [...table.matchAll(/`((?:packages|test|scripts)\/[\w./-]+)`/g)].map((m) => m[1]!);
    expect(paths.length).toBeGreaterThan(10);
    for (const p of paths) await expect(fs.access(path.join(root, p)), p).resolves.toBeUndefined();
  });
});
