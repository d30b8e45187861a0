/**
 * `swarm pack` and `swarm hash`: the deterministic packer of `swarm push`, without a
 * registry. Both honour .swarmignore and refuse secret files as push does.
 */
import fs from 'node:fs/promises';
import type { Command } from 'commander';
import { SwarmError } from '../errors.js';
import { sha256File } from '../hash.js';
import { packBundle } from '../pack.js';
import { formatBytes } from './format.js';
import { type ProgressReporter, createProgress } from './progress.js';

export type CliContext = {
  json: () => boolean;
  output: <T>(value: T, human: (v: T) => void) => void;
};

export const ALLOW_SECRET_FILES = ['--allow-secret-files', 'pack files that look like secrets (.env, private keys, credentials) instead of refusing'] as const;

/** Clears a progress bar before the error is printed, then rethrows. */
const failed = (progress: ProgressReporter | undefined) => (err: unknown): never => {
  progress?.end(true);
  throw err;
};

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function registerBundleCommands(program: Command, cli: CliContext): void {
  program
    .command('pack <dir>')
    .description('pack a directory into a bundle file deterministically, as `swarm push <dir>` would: the same tree gives the same bytes anywhere (see docs/bundles.md)')
    .requiredOption('-o, --output <file>', 'where to write the .tar.gz')
    .option(...ALLOW_SECRET_FILES)
    .action(async (dir: string, o: { output: string; allowSecretFiles?: boolean }) => {
      const progress = await createProgress({ json: cli.json() });
      const r = await packBundle(dir, { out: o.output, allowSecretFiles: o.allowSecretFiles, onProgress: (p) => progress?.update(p) }).catch(failed(progress));
      progress?.end();
      cli.output({ file: o.output, ...r }, (v) => {
        console.log(`packed ${plural(v.files, 'file')} and ${plural(v.directories, 'directory', 'directories')} of ${dir} into ${v.file} (${formatBytes(v.size)})`);
        console.log(`sha256:${v.hash}`);
      });
    });

  program
    .command('hash <file|dir>')
    .description('print the sha256 a push would register: of a file\'s bytes, or of the bundle a directory packs into (no file is written)')
    .option(...ALLOW_SECRET_FILES)
    .action(async (source: string, o: { allowSecretFiles?: boolean }) => {
      const st = await fs.stat(source).catch(() => {
        throw new SwarmError('INVALID_INPUT', `${source} does not exist`);
      });
      const progress = await createProgress({ json: cli.json() });
      let result: { kind: 'file' | 'directory'; hash: string; size: number; files?: number; directories?: number };
      if (st.isDirectory()) {
        const packed = await packBundle(source, { allowSecretFiles: o.allowSecretFiles, onProgress: (p) => progress?.update(p) }).catch(failed(progress));
        result = { kind: 'directory', ...packed };
      } else if (st.isFile()) {
        let bytes = 0;
        const hash = await sha256File(source, (n) => progress?.update({ phase: 'hash', bytes: (bytes += n), total: st.size })).catch(failed(progress));
        result = { kind: 'file', hash, size: st.size };
      } else {
        throw new SwarmError('INVALID_INPUT', `${source} is neither a file nor a directory`);
      }
      progress?.end();
      cli.output({ path: source, ...result }, (v) => console.log(v.hash));
    });
}
