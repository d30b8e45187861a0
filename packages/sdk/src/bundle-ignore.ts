/**
 * What a bundle leaves out: the defaults below, always, plus the patterns of the tree's
 * root `.swarmignore` in gitignore syntax. Matching is done by the `ignore` package (the
 * gitignore matcher eslint and prettier use) rather than by hand, so negation (`!`),
 * directory-only patterns (`dir/`), anchoring (`/x`) and `**` behave as in git.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import ignore from 'ignore';
import { SwarmError } from './errors.js';

export const IGNORE_FILE = '.swarmignore';

/**
 * Never packed, whatever `.swarmignore` says: version-control metadata, build caches,
 * and the root `.swarmignore` itself (it says how to pack, it is not workflow code, so
 * editing only a comment in it does not change the bundle).
 */
export const DEFAULT_IGNORES: readonly string[] = ['.git', '.hg', '.svn', '**/node_modules/.cache', `/${IGNORE_FILE}`];

export type IgnoreRules = {
  /** Whether `relPath` (relative to the root, `/`-separated) is left out of the bundle. */
  ignores(relPath: string, isDirectory: boolean): boolean;
};

/** The rules for the tree at `root`: the defaults and its `.swarmignore`, if any. */
export async function loadIgnoreRules(root: string): Promise<IgnoreRules> {
  const file = path.join(root, IGNORE_FILE);
  const text = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw new SwarmError('INVALID_INPUT', `cannot read ${file} (${err.code ?? err.message})`);
  });
  // Case-sensitive, as git is on Linux. Defaults live apart so that no `!` can undo them.
  const defaults = ignore({ ignorecase: false }).add(DEFAULT_IGNORES);
  const user = ignore({ ignorecase: false }).add(text);
  return {
    ignores(relPath, isDirectory) {
      const p = isDirectory ? `${relPath}/` : relPath;
      return defaults.ignores(p) || user.ignores(p);
    },
  };
}
