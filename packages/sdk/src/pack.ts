/**
 * Packs a directory into a bundle (tar.gz) deterministically: entries sorted by path,
 * fixed mtime, no owner names or ids, modes normalised to 0644/0755, gzip at a fixed
 * level with no name or time in its header. The same tree gives the same bytes, so the
 * same hash, on any machine.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import * as tar from 'tar';
import { SwarmError } from './errors.js';

/** Never packed: version control metadata and caches. */
const ALWAYS_IGNORED = new Set(['.git', '.hg', '.svn']);
const EPOCH = new Date(0);

/**
 * Lists what a bundle of `root` holds, sorted: directories and files, with symlinks to
 * files inside the tree packed as those files. A symlink leaving the tree is refused,
 * since the boot agent only accepts regular files and directories.
 */
export async function listBundleEntries(root: string): Promise<string[]> {
  const realRoot = await fs.realpath(root).catch(() => {
    throw new SwarmError('INVALID_INPUT', `cannot read directory ${root}`);
  });
  const entries: string[] = [];
  async function walk(rel: string): Promise<void> {
    const dirents = await fs.readdir(path.join(realRoot, rel), { withFileTypes: true });
    dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const d of dirents) {
      if (rel === '' && ALWAYS_IGNORED.has(d.name)) continue;
      const relPath = rel ? `${rel}/${d.name}` : d.name;
      const abs = path.join(realRoot, relPath);
      if (d.isSymbolicLink()) {
        const target = await fs.realpath(abs).catch(() => null);
        if (!target || (target !== realRoot && !target.startsWith(realRoot + path.sep))) {
          throw new SwarmError('INVALID_INPUT', `symlink ${relPath} points outside the bundle directory`, 'copy the file into the directory, or remove the link');
        }
        const st = await fs.stat(target);
        if (!st.isFile()) throw new SwarmError('INVALID_INPUT', `symlink ${relPath} points to a directory; only links to files are packed`);
        entries.push(relPath);
      } else if (d.isDirectory()) {
        entries.push(relPath);
        await walk(relPath);
      } else if (d.isFile()) {
        entries.push(relPath);
      } else {
        throw new SwarmError('INVALID_INPUT', `${relPath} is not a regular file or directory`);
      }
    }
  }
  await walk('');
  if (entries.length === 0) throw new SwarmError('INVALID_INPUT', `directory ${root} is empty`);
  return entries;
}

/** A tar.gz stream of `root`'s entries (from listBundleEntries). */
export function packDirectory(root: string, entries: string[]): Readable {
  return tar.create(
    {
      cwd: root,
      gzip: { level: 6 },
      portable: true,
      follow: true,
      noDirRecurse: true,
      mtime: EPOCH,
      onWriteEntry: (entry) => {
        const st = entry.stat as { mode: number } | undefined;
        if (!st) return;
        const isDir = entry.type === 'Directory';
        st.mode = (st.mode & ~0o7777) | (isDir || st.mode & 0o111 ? 0o755 : 0o644);
      },
    },
    entries,
  ) as unknown as Readable;
}
