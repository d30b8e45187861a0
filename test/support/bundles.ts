/** Bundles for tests: a directory of files, packed by the SDK's deterministic packer. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { listBundleEntries, packDirectory } from '../../packages/sdk/src/index.js';

/** Writes `files` into a fresh `dir` and packs it to `<dir>.tar.gz`; returns that path. */
export async function bundleOf(dir: string, files: Record<string, string>): Promise<string> {
  await fs.rm(dir, { recursive: true, force: true });
  for (const [name, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), text);
  }
  const file = `${dir}.tar.gz`;
  await fs.writeFile(file, packDirectory(dir, await listBundleEntries(dir)));
  return file;
}
