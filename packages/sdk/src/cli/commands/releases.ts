/** A workflow's versions and which of them runs: activate, rollback, canary, promote, with history and diffs. */
import type { Command } from 'commander';
import type { ReleaseState } from '../../contract/index.js';
import { SwarmError } from '../../errors.js';
import type { Cli } from '../context.js';
import { formatBytes } from '../format.js';
import { asCount, asVersion, asWeight, valueOption, type ValueParser, WORKFLOW } from '../options.js';

const describeRelease = (r: ReleaseState) =>
  `${r.workflow}: active version ${r.activeVersion ?? 'none'}${r.canary ? `, canary version ${r.canary.version} at ${r.canary.weight}% of spawns` : ', no canary'}`;

/** `--expect none`: no version may be active. */
const asExpectedVersion: ValueParser<number | null> = (what) => (text) => (text === 'none' ? null : asVersion(what)(text));

export function registerReleaseCommands(program: Command, cli: Cli): void {
  program
    .command('versions')
    .description("list a workflow's versions, newest first")
    .argument(...WORKFLOW)
    .action(async (workflow: string) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.workflows.versions.query({ workflow })), (rows) =>
        cli.table(rows, [
          ['VERSION', (v) => `${v.version}${v.active ? ' active' : v.canary ? ' canary' : v.prunedAt ? ' pruned' : ''}`],
          ['HASH', (v) => v.bundleHash.slice(0, 12)],
          ['SIZE', (v) => formatBytes(v.size)],
          ['SIGNED', (v) => (v.signature ? `${v.signature.keyId.slice(0, 12)}${v.signature.keyRevoked ? ' (revoked)' : ''}` : 'unsigned')],
          ['CREATED', (v) => v.createdAt],
          ['BY', (v) => v.createdBy],
          ['MESSAGE', (v) => v.message ?? ''],
        ]),
      );
    });

  program
    .command('activate')
    .description('make a version the active one')
    .argument(...WORKFLOW)
    .argument('<version>', 'the version to make active', asVersion('version'))
    .addOption(
      valueOption(
        '--expect <version>',
        'only if this is the active version now (compare-and-set; "none" for no active version)',
        asExpectedVersion,
      ),
    )
    .option('-m, --message <msg>', 'why (kept in the activation history)')
    .action(async (workflow: string, version: number, o: { expect?: number | null; message?: string }) => {
      const c = cli.client();
      cli.output(
        await c.call(() => c.trpc.versions.activate.mutate({ workflow, version, expectedActiveVersion: o.expect, message: o.message })),
        (v) => cli.print(`version ${v.version} of ${workflow} is active (sha256:${v.bundleHash.slice(0, 12)})`),
      );
    });

  program
    .command('active')
    .description("show a workflow's active version and a download URL for its bundle")
    .argument(...WORKFLOW)
    .action(async (workflow: string) => {
      const c = cli.client();
      cli.output(await c.resolveActive(workflow), (a) => {
        cli.print(`version ${a.version} (${a.versionId})`);
        cli.print(`bundle  sha256:${a.bundleHash} (${formatBytes(a.size)})`);
        cli.print(
          `tree    ${a.treeDigest ? `sha256:${a.treeDigest}` : 'no digest (stored before tree digests; push it again to add one)'}`,
        );
        cli.print(`url     ${a.bundleUrl}`);
        cli.print(`expires ${a.expiresAt}`);
      });
    });

  program
    .command('rollback')
    .description('make the previously active version active again (or the one named with --to)')
    .argument(...WORKFLOW)
    .addOption(valueOption('--to <version>', 'roll back to this version instead', asVersion))
    .option('-m, --message <msg>', 'why (kept in the history)')
    .action(async (workflow: string, o: { to?: number; message?: string }) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.releases.rollback.mutate({ workflow, to: o.to, message: o.message })), (r) =>
        cli.print(`rolled back ${describeRelease(r)}`),
      );
    });

  program
    .command('canary')
    .description('send a share of spawns to another version (--weight), or end the canary (--clear)')
    .argument(...WORKFLOW)
    .argument('[version]', 'the version to send a share of spawns to', asVersion('version'))
    .addOption(valueOption('--weight <percent>', 'share of spawns that get the canary, 1–99', asWeight))
    .option('--clear', 'end the canary: every spawn gets the active version')
    .option('-m, --message <msg>', 'why (kept in the history)')
    .action(async (workflow: string, version: number | undefined, o: { weight?: number; clear?: boolean; message?: string }) => {
      const c = cli.client();
      if (o.clear) {
        if (version !== undefined || o.weight !== undefined) throw new SwarmError('INVALID_INPUT', '--clear takes no version or --weight');
        cli.output(await c.call(() => c.trpc.releases.clearCanary.mutate({ workflow, message: o.message })), (r) =>
          cli.print(describeRelease(r)),
        );
        return;
      }
      if (version === undefined || o.weight === undefined) {
        throw new SwarmError(
          'INVALID_INPUT',
          'a canary needs a version and --weight',
          `e.g. swarm canary ${workflow} 4 --weight 10, or --clear`,
        );
      }
      const input = { workflow, version, weight: o.weight, message: o.message };
      cli.output(await c.call(() => c.trpc.releases.setCanary.mutate(input)), (r) => cli.print(describeRelease(r)));
    });

  program
    .command('promote')
    .description('make the canary the active version')
    .argument(...WORKFLOW)
    .option('-m, --message <msg>', 'why (kept in the history)')
    .action(async (workflow: string, o: { message?: string }) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.releases.promote.mutate({ workflow, message: o.message })), (r) =>
        cli.print(`promoted ${describeRelease(r)}`),
      );
    });

  program
    .command('history')
    .description('every activation, rollback, promotion and canary change, newest first')
    .argument(...WORKFLOW)
    .addOption(valueOption('-n, --limit <n>', 'at most this many entries', asCount, '100'))
    .action(async (workflow: string, o: { limit: number }) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.releases.history.query({ workflow, limit: o.limit })), (rows) =>
        cli.table(rows, [
          ['WHEN', (h) => h.createdAt],
          ['WHAT', (h) => h.kind],
          ['FROM', (h) => (h.fromVersion === null ? '-' : String(h.fromVersion))],
          ['TO', (h) => (h.toVersion === null ? '-' : `${h.toVersion}${h.weight === null ? '' : ` (${h.weight}%)`}`)],
          ['BY', (h) => h.actor],
          ['MESSAGE', (h) => (h.signatureWarning ? `${h.message ?? ''} [signature: ${h.signatureWarning}]`.trim() : (h.message ?? ''))],
        ]),
      );
    });

  program
    .command('diff')
    .description("files added (+), removed (-) and changed (M) between two versions' bundles")
    .argument(...WORKFLOW)
    .argument('<from>', 'the older version', asVersion('from'))
    .argument('<to>', 'the newer version', asVersion('to'))
    .action(async (workflow: string, from: number, to: number) => {
      const c = cli.client();
      cli.output(await c.call(() => c.trpc.releases.diff.query({ workflow, from, to })), (d) => {
        for (const f of d.added) cli.print(`+ ${f.path} (${formatBytes(f.size)})`);
        for (const f of d.removed) cli.print(`- ${f.path} (${formatBytes(f.size)})`);
        for (const f of d.changed) cli.print(`M ${f.path} (${formatBytes(f.from.size)} → ${formatBytes(f.to.size)})`);
        cli.print(
          `version ${d.fromVersion} → ${d.toVersion}: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed, ${d.unchanged} unchanged`,
        );
      });
    });
}
