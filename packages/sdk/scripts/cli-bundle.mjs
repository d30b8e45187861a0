/**
 * The `swarm` CLI as one ES module, dist/swarm-cli.mjs, for `pnpm swarm` in the workspace
 * (scripts/swarm.mjs runs it). Running the TypeScript sources through tsx costs ~3 s of
 * transpiling and module resolution at every start, and resolving the dependencies' ~400
 * files from node_modules ~1 s more; one bundled file starts in ~0.4 s (bench/README.md, #7c).
 *
 * `ensureCliBundle()` rebuilds it when it is missing or older than anything it is built
 * from (the SDK's sources, its package.json, the lockfile, this file), so an edited source
 * is never run stale. Run directly (`pnpm install` does, from the root's postinstall), it
 * builds unconditionally.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const sdk = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CLI_BUNDLE = path.join(sdk, 'dist/swarm-cli.mjs');
const inputs = [
  path.join(sdk, 'src'),
  path.join(sdk, 'package.json'),
  path.join(sdk, '../../pnpm-lock.yaml'),
  fileURLToPath(import.meta.url),
];

/** The newest modification time under `file` (a directory is walked), 0 when it is missing. */
function newestMtime(file) {
  let st;
  try {
    st = fs.statSync(file);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs; // a deleted or renamed file changes its directory's mtime
  for (const name of fs.readdirSync(file)) newest = Math.max(newest, newestMtime(path.join(file, name)));
  return newest;
}

export async function buildCliBundle() {
  const { build } = await import('esbuild');
  // Written beside and renamed into place: a `pnpm swarm` starting meanwhile reads the old file or the new, never half of one.
  const temp = `${CLI_BUNDLE}.${process.pid}.tmp`;
  await build({
    entryPoints: [path.join(sdk, 'src/cli/main.ts')],
    outfile: temp,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    logLevel: 'warning',
    // The CommonJS dependencies (commander, undici, tar, …) call require(): give the ES module one.
    banner: { js: "import { createRequire as __swarmRequire } from 'node:module'; const require = __swarmRequire(import.meta.url);" },
  });
  fs.renameSync(temp, CLI_BUNDLE);
}

/** Builds the bundle unless it is newer than everything it is built from. */
export async function ensureCliBundle() {
  const built = newestMtime(CLI_BUNDLE);
  if (built === 0 || inputs.some((f) => newestMtime(f) > built)) await buildCliBundle();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await buildCliBundle();
