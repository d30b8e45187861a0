/** The `swarm` CLI against a registry on the S3 server: human output, --json, exit codes. */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundle } from '../packages/boot-agent/test/support/archives.js';
import { freeLoopbackPort } from '../packages/server/src/db/embedded.js';
import { swarm } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

let reg: TestRegistry;
let env: Record<string, string>;
let work: string;
beforeAll(async () => {
  reg = await startTestRegistry({ storage: 's3' });
  env = { SWARM_URL: reg.url, SWARM_TOKEN: reg.adminToken };
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-cli-'));
  await fs.mkdir(path.join(work, 'app/lib'), { recursive: true });
  await fs.writeFile(path.join(work, 'app/index.js'), 'console.log("hello from the bundle")\n');
  await fs.writeFile(path.join(work, 'app/lib/util.js'), 'export const x = 1;\n');
  await fs.writeFile(path.join(work, 'app/swarm.json'), '{"entrypoint":["node","index.js"]}\n');
  await fs.symlink('../index.js', path.join(work, 'app/lib/index-link.js'));
});
afterAll(async () => {
  await reg?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const json = async (args: string[]) => {
  const r = await swarm([...args, '--json'], env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
};

describe('swarm CLI', () => {
  it('creates a tenant and a workflow, and lists them', async () => {
    const t = await json(['tenants', 'create', 'acme']);
    expect(t).toMatchObject({ slug: 'acme', id: expect.any(String) });
    const w = await json(['workflows', 'create', 'acme/hello']);
    expect(w).toMatchObject({ tenant: 'acme', name: 'hello', activeVersion: null });
    expect(await json(['tenants', 'list'])).toEqual([t]);
    expect(await json(['workflows', 'list', 'acme'])).toEqual([w]);
    const human = await swarm(['workflows', 'list', 'acme'], env);
    expect(human.stdout).toMatch(/^NAME\s+ACTIVE\s+ID\nacme\/hello\s+-\s+/);
  });

  it('pushes a directory, and an unchanged tree again makes no new version', async () => {
    const first = await json(['push', path.join(work, 'app'), '--workflow', 'acme/hello', '--activate', '-m', 'first']);
    expect(first).toMatchObject({ version: 1, created: true, active: true });
    expect(Object.keys(first).sort()).toEqual([
      'active',
      'bundleHash',
      'created',
      'size',
      'treeDigest',
      'version',
      'versionId',
      'workflowId',
    ]);
    const again = await json(['push', path.join(work, 'app'), '-w', 'acme/hello']);
    expect(again).toMatchObject({ version: 1, created: false, bundleHash: first.bundleHash });

    const active = await json(['active', 'acme/hello']);
    expect(active).toMatchObject({ version: 1, bundleHash: first.bundleHash });
    const bytes = Buffer.from(await (await fetch(active.bundleUrl)).arrayBuffer());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(first.bundleHash);
    const listing = await new Promise<string>((resolve, reject) => {
      const tarList = spawn('tar', ['tzvf', '-']);
      let out = '';
      tarList.stdout.on('data', (c: Buffer) => (out += c));
      tarList.on('close', (code: number) => (code === 0 ? resolve(out) : reject(new Error(`tar exited ${code}`))));
      tarList.stdin.end(bytes);
    });
    // Sorted, the link stored as the file it points to, modes normalised.
    expect(listing).toMatch(/-rw-r--r-- 0\/0 .* index\.js\n/);
    expect(listing).toMatch(/-rw-r--r-- 0\/0 .* lib\/index-link\.js\n/);
    expect(listing.indexOf('index.js')).toBeLessThan(listing.indexOf('lib/'));
  });

  it('pushes a tar.gz file and prints a human summary', async () => {
    const file = path.join(work, 'b.tar.gz');
    await fs.writeFile(file, bundle([{ path: 'main.sh', body: 'echo second\n' }]).bytes);
    const r = await swarm(['push', file, '-w', 'acme/hello', '-m', 'second'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^pushed version 2 of acme\/hello \(.*sha256:[0-9a-f]{12}\)\n$/);
    const versions = await json(['versions', 'acme/hello']);
    expect(versions.map((v: { version: number; active: boolean; message: string }) => [v.version, v.active, v.message])).toEqual([
      [2, false, 'second'],
      [1, true, 'first'],
    ]);
  });

  it('activates with --expect, and a stale --expect fails with a hint', async () => {
    const stale = await swarm(['activate', 'acme/hello', '2', '--expect', '2'], env);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/^swarm: the active version of acme\/hello is 1, not 2 \(hint: .*\)\n$/);
    expect(await json(['activate', 'acme/hello', '2', '--expect', '1'])).toMatchObject({ version: 2, active: true });
    expect((await json(['active', 'acme/hello'])).version).toBe(2);
  });

  it('mints a tenant token whose plaintext is printed once, and that token works', async () => {
    const created = await json(['tokens', 'create', '--scope', 'tenant:acme', '--name', 'acme-ci']);
    expect(created).toMatchObject({ name: 'acme-ci', scope: 'tenant:acme', token: expect.stringMatching(/^swt_/) });
    const listed = await json(['tokens', 'list']);
    expect(JSON.stringify(listed)).not.toContain(created.token);
    const asTenant = await swarm(['workflows', 'list', 'acme', '--json'], { SWARM_URL: reg.url, SWARM_TOKEN: created.token });
    expect(JSON.parse(asTenant.stdout)).toHaveLength(1);
  });

  it('fails with one line and a non-zero exit', async () => {
    const closedPort = await freeLoopbackPort();
    const cases: Array<[string[], Record<string, string>, number, RegExp]> = [
      [['workflows', 'list', 'nope'], env, 1, /^swarm: tenant "nope" not found\n$/],
      [['activate', 'acme/hello', 'x'], env, 2, /^swarm: version must be a version number/],
      [['push', path.join(work, 'missing'), '-w', 'acme/hello'], env, 2, /^swarm: .*missing does not exist\n$/],
      [['tenants', 'list'], { SWARM_URL: reg.url }, 1, /^swarm: no API token \(hint: set SWARM_TOKEN/],
      [['tenants', 'list'], { SWARM_URL: reg.url, SWARM_TOKEN: 'wrong' }, 1, /^swarm: missing or invalid bearer token\n$/],
      [
        ['tenants', 'list'],
        { SWARM_URL: `http://127.0.0.1:${closedPort}`, SWARM_TOKEN: 'x' },
        1,
        /^swarm: cannot reach the registry \(ECONNREFUSED\)/,
      ],
      [['tenants', 'create', 'Bad Slug'], env, 1, /^swarm: invalid input: slug: /],
    ];
    for (const [args, e, code, stderr] of cases) {
      const r = await swarm([...args, '--json'], e);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(stderr);
    }
  });

  it('documents every command in --help', async () => {
    const r = await swarm(['--help'], {});
    expect(r.code).toBe(0);
    for (const cmd of ['tenants', 'workflows', 'push', 'pack', 'hash', 'versions', 'activate', 'active', 'tokens'])
      expect(r.stdout).toContain(cmd);
  });
});
