/**
 * What a killed or crashed agent leaves behind: partial downloads and trees in the cache
 * (`.partial-*`), staging directories beside the workflow directory. Nothing in the cache
 * is fsynced and a VM can be killed at any time, so the next agent removes them, once they
 * are clearly abandoned: a live download or unpack touches its entry far more often.
 */
import fs from 'node:fs/promises';
import path from 'node:path';

/** Untouched this long, a leftover is taken to be abandoned. */
const ABANDONED_MS = 60 * 60 * 1000;

/**
 * Removes the entries of `dir` whose names start with `prefix` and that are untouched for
 * ABANDONED_MS; returns the names of the entries left (none when `dir` cannot be read), so
 * that a caller walking the directory next need not read it again.
 */
export async function removeAbandoned(dir: string, prefix: string): Promise<string[]> {
  const left: string[] = [];
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith(prefix)) {
      const at = path.join(dir, name);
      const st = await fs.lstat(at).catch(() => null);
      if (st && Date.now() - st.mtimeMs > ABANDONED_MS) {
        await fs.rm(at, { recursive: true, force: true });
        continue;
      }
    }
    left.push(name);
  }
  return left;
}
