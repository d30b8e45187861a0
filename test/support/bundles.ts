/** Bundles for tests: a directory of files, packed by the SDK's deterministic packer. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { listBundleEntries, packDirectory } from '../../packages/sdk/src/index.js';

/** A file's text, or its text with a mode, or a symlink to `link`. */
export type TreeEntry = string | { text: string; mode?: number } | { link: string };

/** Writes `files` into a fresh `dir` (parent directories as needed). */
export async function writeTree(dir: string, files: Record<string, TreeEntry>): Promise<string> {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  for (const [name, entry] of Object.entries(files)) {
    const file = path.join(dir, name);
    await fs.mkdir(path.dirname(file), { recursive: true });
    if (typeof entry === 'string') await fs.writeFile(file, entry);
    else if ('link' in entry) await fs.symlink(entry.link, file);
    else {
      await fs.writeFile(file, entry.text);
      if (entry.mode !== undefined) await fs.chmod(file, entry.mode);
    }
  }
  return dir;
}

/** Writes `files` into a fresh `dir` and packs it to `<dir>.tar.gz`; returns that path. */
export async function bundleOf(dir: string, files: Record<string, string>): Promise<string> {
  await writeTree(dir, files);
  const file = `${dir}.tar.gz`;
  await fs.writeFile(file, packDirectory(dir, await listBundleEntries(dir)));
  return file;
}
