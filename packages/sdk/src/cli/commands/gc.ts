import type { Command } from 'commander';
import type { Cli } from '../context.js';
import { formatBytes } from '../format.js';
import { asCount, asDuration, valueOption } from '../options.js';

export function registerGcCommand(program: Command, cli: Cli): void {
  program
    .command('gc')
    .description('retire old versions and delete bundles nothing uses any more (admin)')
    .option('--dry-run', 'only report what would be removed')
    .addOption(valueOption('--keep <n>', 'keep the newest N versions of each workflow (active and canary are always kept)', asCount, '10'))
    .addOption(valueOption('--older-than <age>', 'only retire versions older than this: 30d, 12h, 90m, 45s', asDuration, '0s'))
    .action(async (o: { dryRun?: boolean; keep: number; olderThan: number }) => {
      const c = cli.client();
      const input = { dryRun: o.dryRun ?? false, keep: o.keep, olderThanSeconds: o.olderThan };
      cli.output(await c.call(() => c.trpc.gc.run.mutate(input)), (r) => {
        const verb = r.dryRun ? 'would prune' : 'pruned';
        for (const v of r.prunedVersions) cli.print(`${verb} ${v.workflow} version ${v.version}`);
        cli.print(
          `${r.dryRun ? 'dry run: ' : ''}${r.prunedVersions.length} versions ${verb}, ${r.deletedBundles} bundles and ${r.orphanObjects} orphaned objects ${r.dryRun ? 'would be ' : ''}deleted, ` +
            `${r.sweptUploads} interrupted uploads swept, ${formatBytes(r.bytesFreed)} ${r.dryRun ? 'would be ' : ''}freed` +
            (r.keptForGrace ? `; ${r.keptForGrace} kept as younger than the grace period` : ''),
        );
      });
    });
}
