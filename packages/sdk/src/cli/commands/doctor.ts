/**
 * `swarm doctor`: asks the registry to check its dependencies (system.doctor, admin
 * only: the CLI has no database or store credentials) and adds the first check itself,
 * whether the API answers at all. One line per check; exit status 1 if any failed.
 */
import type { Command } from 'commander';
import type { SwarmClient } from '../../client.js';
import type { DoctorCheck, DoctorReport } from '../../contract/index.js';
import { toSwarmError } from '../../errors.js';
import type { Cli } from '../context.js';

export type DoctorOutput = {
  ok: boolean;
  url: string;
  version: string | null;
  storage: DoctorReport['storage'] | null;
  checks: DoctorCheck[];
};

export async function runDoctor(client: SwarmClient): Promise<DoctorOutput> {
  const start = performance.now();
  try {
    const report = await client.call(() => client.trpc.system.doctor.query());
    const ms = Math.round(performance.now() - start);
    const api: DoctorCheck = {
      name: 'api',
      status: 'ok',
      detail: `registry ${report.version} at ${client.url} answered in ${ms} ms (${report.storage} store)`,
    };
    const checks = [api, ...report.checks];
    return { ok: checks.every((c) => c.status !== 'fail'), url: client.url, version: report.version, storage: report.storage, checks };
  } catch (err) {
    const e = toSwarmError(err);
    const hint =
      e.code === 'FORBIDDEN' || e.code === 'UNAUTHORIZED'
        ? 'swarm doctor needs an admin token (SWARM_TOKEN or --token)'
        : (e.hint ?? 'check SWARM_URL and that the registry is running');
    return {
      ok: false,
      url: client.url,
      version: null,
      storage: null,
      checks: [{ name: 'api', status: 'fail', detail: `${client.url}: ${e.message}`, hint }],
    };
  }
}

/** `ok    database          PostgreSQL 18.0 answered in 2 ms`, and `(hint: …)` after a warn or fail. */
export function formatDoctorLines(checks: DoctorCheck[]): string[] {
  const width = Math.max(...checks.map((c) => c.name.length));
  return checks.map((c) => `${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}${c.hint ? ` (hint: ${c.hint})` : ''}`);
}

export function registerDoctorCommand(program: Command, cli: Cli): void {
  program
    .command('doctor')
    .description("check the registry's database, migrations, object store, download path and clocks (admin); exits 1 if a check fails")
    .action(async () => {
      const report = await runDoctor(cli.client());
      cli.output(report, (r) => formatDoctorLines(r.checks).forEach(cli.print));
      if (!report.ok) cli.io.exitCode = 1;
    });
}
