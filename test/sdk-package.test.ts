/**
 * The published SDK stands alone: packed with `pnpm pack`, installed into a scratch
 * TypeScript project outside the workspace, its types check a correct consumer and
 * reject a wrong one, and nothing in it refers to the server's sources, Drizzle or postgres.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const sdkDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../packages/sdk');

const CORRECT = `
import { createSwarmClient, SwarmError, type Workflow } from '@swarm/sdk';
import { bundleHash } from '@swarm/sdk/contract';

const client = createSwarmClient({ url: 'http://127.0.0.1:3000', token: 'swt_x' });
export async function main(): Promise<string> {
  const tenant = await client.trpc.tenants.create.mutate({ slug: 'acme' });
  const wf: Workflow = await client.trpc.workflows.create.mutate({ tenant: tenant.slug, name: 'app' });
  const v = await client.trpc.versions.activate.mutate({ workflow: wf.id, version: 2, expectedActiveVersion: 1 });
  const active = await client.resolveActive('acme/app');
  const up = await client.uploadBundle('bundle.tar.gz', { workflow: 'acme/app', activate: true });
  bundleHash.parse(active.bundleHash);
  if (!(new Error() instanceof SwarmError)) return active.bundleUrl + v.version + up.version;
  return tenant.createdAt;
}
`;

const WRONG = `
import { createSwarmClient } from '@swarm/sdk';
const client = createSwarmClient({ url: 'http://127.0.0.1:3000', token: 'swt_x' });
export const p = client.trpc.tenants.create.mutate({ slugg: 'acme' });
`;

describe('the packed SDK', () => {
  let project: string;
  let tarball: string;
  beforeAll(async () => {
    await run('pnpm', ['run', 'build'], { cwd: sdkDir });
    project = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-sdk-consumer-'));
    const { stdout } = await run('pnpm', ['pack', '--pack-destination', project], { cwd: sdkDir });
    tarball = path.join(project, path.basename(stdout.trim().split('\n').pop()!.trim()));
    await fs.writeFile(
      path.join(project, 'package.json'),
      JSON.stringify({
        name: 'consumer',
        private: true,
        type: 'module',
        dependencies: { '@swarm/sdk': `file:${tarball}`, typescript: '~5.9.3', '@types/node': '^20.19.0' },
      }),
    );
    await fs.writeFile(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
        },
      }),
    );
    await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: project, timeout: 240_000 });
  }, 300_000);
  afterAll(async () => {
    if (project) await fs.rm(project, { recursive: true, force: true });
  });

  it('ships only built files, and its types import nothing from the server, Drizzle or postgres', async () => {
    const { stdout } = await run('tar', ['tzf', tarball]);
    const files = stdout.split('\n').filter(Boolean);
    expect(files).toContain('package/dist/index.d.ts');
    expect(files.some((f) => f.startsWith('package/src/'))).toBe(false);
    const dts = await fs.readFile(path.join(project, 'node_modules/@swarm/sdk/dist/index.d.ts'), 'utf8');
    expect(dts).not.toMatch(/drizzle|postgres|fastify|packages\/server/);
    const pkg = JSON.parse(await fs.readFile(path.join(project, 'node_modules/@swarm/sdk/package.json'), 'utf8'));
    expect(pkg.exports['.'].types).toBe('./dist/index.d.ts');
  });

  it('type-checks a correct consumer', async () => {
    await fs.writeFile(path.join(project, 'correct.ts'), CORRECT);
    await expect(run('npx', ['tsc', '-p', '.'], { cwd: project })).resolves.toBeDefined();
  });

  it('rejects a consumer that passes a wrong field', async () => {
    await fs.writeFile(path.join(project, 'wrong.ts'), WRONG);
    const err = (await run('npx', ['tsc', '-p', '.'], { cwd: project }).catch((e: { stdout: string }) => e)) as { stdout: string };
    expect(err.stdout).toMatch(/wrong\.ts.*slugg/s);
    expect(err.stdout).not.toMatch(/correct\.ts/);
    await fs.rm(path.join(project, 'wrong.ts'));
  });

  it('runs the bundled CLI', async () => {
    const { stdout } = await run('node', [path.join(project, 'node_modules/@swarm/sdk/bin/swarm.js'), '--help']);
    expect(stdout).toMatch(/push/);
  });
});
