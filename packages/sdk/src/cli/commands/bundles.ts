/**
 * `swarm push`, and `swarm pack` and `swarm hash`: the deterministic packer of push
 * without a registry. All honour .swarmignore and refuse secret files alike.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { SwarmError } from '../../errors.js';
import { sha256File } from '../../hash.js';
import { packBundle } from '../../pack.js';
import { readSigningKey, splitWorkflowRef } from '../../sign-bundle.js';
import type { Cli } from '../context.js';
import { formatBytes } from '../format.js';
import { asWorkflow, valueOption } from '../options.js';
import { type ProgressReporter, createProgress } from '../progress.js';

const ALLOW_SECRET_FILES = [
  '--allow-secret-files',
  'pack files that look like secrets (.env, private keys, credentials) instead of refusing',
] as const;

/** Clears a progress bar before the error is printed, then rethrows. */
const failed =
  (progress: ProgressReporter | undefined) =>
  (err: unknown): never => {
    progress?.end(true);
    throw err;
  };

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

type PushOptions = {
  workflow: string;
  activate?: boolean;
  message?: string;
  allowSecretFiles?: boolean;
  entrypoint?: string;
  sign?: string;
};

/**
 * `push --entrypoint`: the bundle's swarm.json (how the boot agent runs it), written into
 * the directory so that it is packed with it and seen there; one that says the same is
 * left alone, one that says otherwise is not overwritten.
 */
async function writeManifest(dir: string, isDirectory: boolean, command: string): Promise<void> {
  if (!isDirectory) throw new SwarmError('INVALID_INPUT', '--entrypoint needs a directory', 'a .tar.gz carries its own swarm.json');
  const entrypoint = command.split(/\s+/).filter(Boolean);
  if (!entrypoint.length) throw new SwarmError('INVALID_INPUT', '--entrypoint needs a command, e.g. --entrypoint "sh main.sh"');
  const file = path.join(dir, 'swarm.json');
  const text = `${JSON.stringify({ entrypoint })}\n`;
  const existing = await fs.readFile(file, 'utf8').catch(() => null);
  if (existing === null) return fs.writeFile(file, text);
  let same = false;
  try {
    same = JSON.stringify((JSON.parse(existing) as { entrypoint?: unknown }).entrypoint) === JSON.stringify(entrypoint);
  } catch {}
  if (!same)
    throw new SwarmError('INVALID_INPUT', `${file} already names another entrypoint`, 'edit swarm.json, or push without --entrypoint');
}

export function registerBundleCommands(program: Command, cli: Cli): void {
  const progressFor = () => createProgress({ json: cli.json(), stream: cli.io.stderr });

  program
    .command('push <path>')
    .description(
      'upload a bundle as a new version: a .tar.gz file as it is, or a directory packed as `swarm pack` does (honours .swarmignore, refuses secret files)',
    )
    .addOption(valueOption('-w, --workflow <tenant/name>', 'workflow to add the version to', asWorkflow).makeOptionMandatory())
    .option('--activate', 'make the new version active')
    .option('-m, --message <msg>', 'what changed (kept in the version history)')
    .option(
      '--entrypoint <command>',
      'a directory without swarm.json: write one running this command (words split at spaces, e.g. "sh main.sh")',
    )
    .option(...ALLOW_SECRET_FILES)
    .addOption(
      new Option(
        '--sign <key-file>',
        'sign the bundle with this tenant key (<name>.key; docs/signing.md); it never leaves this machine',
      ).env('SWARM_SIGNING_KEY'),
    )
    .action(async (source: string, o: PushOptions) => {
      const c = cli.client();
      const signingKey = o.sign ? await readSigningKey(o.sign) : undefined;
      if (signingKey) splitWorkflowRef(o.workflow);
      const st = await fs.stat(source).catch(() => {
        throw new SwarmError('INVALID_INPUT', `${source} does not exist`);
      });
      if (o.entrypoint !== undefined) await writeManifest(source, st.isDirectory(), o.entrypoint);
      const progress = await progressFor();
      let file = source;
      let tmpDir: string | undefined;
      let ok = false;
      try {
        if (st.isDirectory()) {
          tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-push-'));
          file = path.join(tmpDir, 'bundle.tar.gz');
          await packBundle(source, { out: file, allowSecretFiles: o.allowSecretFiles, onProgress: (p) => progress?.update(p) });
        }
        const result = await c.uploadBundle(file, {
          workflow: o.workflow,
          activate: o.activate,
          message: o.message,
          onProgress: (p) => progress?.update(p),
          signingKey,
        });
        progress?.end();
        ok = true;
        const { uploaded, ...body } = result;
        cli.output(body, (r) => {
          const what = r.created ? `pushed version ${r.version}` : `unchanged: version ${r.version} already has this bundle`;
          cli.print(
            `${what} of ${o.workflow} (${formatBytes(r.size)}, sha256:${r.bundleHash.slice(0, 12)}${uploaded ? '' : ', already stored, nothing uploaded'})${signingKey ? ', signed' : ''}${r.active ? ' — active' : ''}`,
          );
        });
      } finally {
        if (!ok) progress?.end(true);
        if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
      }
    });

  program
    .command('pack <dir>')
    .description(
      'pack a directory into a bundle file deterministically, as `swarm push <dir>` would: the same tree gives the same bytes anywhere (see docs/bundles.md)',
    )
    .requiredOption('-o, --output <file>', 'where to write the .tar.gz')
    .option(...ALLOW_SECRET_FILES)
    .action(async (dir: string, o: { output: string; allowSecretFiles?: boolean }) => {
      const progress = await progressFor();
      const r = await packBundle(dir, {
        out: o.output,
        allowSecretFiles: o.allowSecretFiles,
        onProgress: (p) => progress?.update(p),
      }).catch(failed(progress));
      progress?.end();
      cli.output({ file: o.output, ...r }, (v) => {
        cli.print(
          `packed ${plural(v.files, 'file')} and ${plural(v.directories, 'directory', 'directories')} of ${dir} into ${v.file} (${formatBytes(v.size)})`,
        );
        cli.print(`sha256:${v.hash}`);
      });
    });

  program
    .command('hash <file|dir>')
    .description("print the sha256 a push would register: of a file's bytes, or of the bundle a directory packs into (no file is written)")
    .option(...ALLOW_SECRET_FILES)
    .action(async (source: string, o: { allowSecretFiles?: boolean }) => {
      const st = await fs.stat(source).catch(() => {
        throw new SwarmError('INVALID_INPUT', `${source} does not exist`);
      });
      const progress = await progressFor();
      let result: { kind: 'file' | 'directory'; hash: string; size: number; files?: number; directories?: number };
      if (st.isDirectory()) {
        const packed = await packBundle(source, { allowSecretFiles: o.allowSecretFiles, onProgress: (p) => progress?.update(p) }).catch(
          failed(progress),
        );
        result = { kind: 'directory', ...packed };
      } else if (st.isFile()) {
        let bytes = 0;
        const hash = await sha256File(source, (n) => {
          bytes += n;
          progress?.update({ phase: 'hash', bytes, total: st.size });
        }).catch(failed(progress));
        result = { kind: 'file', hash, size: st.size };
      } else {
        throw new SwarmError('INVALID_INPUT', `${source} is neither a file nor a directory`);
      }
      progress?.end();
      cli.output({ path: source, ...result }, (v) => cli.print(v.hash));
    });
}
