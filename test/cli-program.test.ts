/**
 * The `swarm` commands in-process, through buildProgram(), against a real registry
 * (PostgreSQL, fs store): no process is spawned, output and exit status are captured.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { swarmInProcess } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

let reg: TestRegistry;
let work: string;
let auth: string[];
beforeAll(async () => {
  reg = await startTestRegistry({ storage: 'fs' });
  auth = ['--url', reg.url, '--token', reg.adminToken];
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-cli-program-'));
  for (const v of ['v1', 'v2']) {
    await fs.mkdir(path.join(work, v));
    await fs.writeFile(path.join(work, v, 'index.js'), `console.log("${v}")\n`);
  }
  await fs.writeFile(path.join(work, 'v2', 'added.txt'), 'new in v2\n');
});
afterAll(async () => {
  await reg?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const swarm = (args: string[]) => swarmInProcess([...args, ...auth]);
const json = async (args: string[]) => {
  const r = await swarm([...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
  return JSON.parse(r.stdout);
};

describe('swarm commands in-process', () => {
  it('creates a tenant and a workflow and lists them, as JSON and as a table', async () => {
    expect(await json(['tenants', 'create', 'acme'])).toMatchObject({ slug: 'acme' });
    expect(await json(['workflows', 'create', 'acme/hello'])).toMatchObject({ tenant: 'acme', name: 'hello', activeVersion: null });
    const table = await swarm(['workflows', 'list', 'acme']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+ACTIVE\s+ID\nacme\/hello\s+-\s+[0-9a-f-]{36}\n$/);
  });

  it('pushes two versions, activates, shows the diff and the history', async () => {
    const first = await swarm(['push', path.join(work, 'v1'), '-w', 'acme/hello', '--activate']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^pushed version 1 of acme\/hello \(.*\) — active\n$/);
    expect(first.stderr).toMatch(/^uploading done: /m);
    expect(await json(['push', path.join(work, 'v2'), '-w', 'acme/hello'])).toMatchObject({ version: 2, created: true, active: false });

    expect(await json(['activate', 'acme/hello', '2', '--expect', '1'])).toMatchObject({ version: 2, active: true });
    const diff = await swarm(['diff', 'acme/hello', '1', '2']);
    expect(diff.stdout).toMatch(
      /^\+ added\.txt \(10 B\)\nM index\.js \(.*\)\nversion 1 → 2: 1 added, 0 removed, 1 changed, 0 unchanged\n$/,
    );
    const history = await json(['history', 'acme/hello', '-n', '1']);
    expect(history).toEqual([expect.objectContaining({ kind: 'activate', fromVersion: 1, toVersion: 2 })]);
  });

  it('mints a token for the scope --scope names', async () => {
    expect(await json(['tokens', 'create', '--scope', 'tenant:acme', '--name', 'ci'])).toMatchObject({
      scope: 'tenant:acme',
      token: expect.stringMatching(/^swt_/),
    });
  });

  it('prints --help on stdout and exits 0', async () => {
    const r = await swarmInProcess(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: swarm \[options\] \[command\]/);
    for (const cmd of ['tenants', 'push', 'canary', 'gc', 'spawn', 'executions', 'doctor']) expect(r.stdout).toContain(`  ${cmd} `);
  });

  it('refuses bad values with one line and exit status 2, before any request', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['tokens', 'create', '--scope', 'root'], /^swarm: --scope must be admin, orchestrator or tenant:<slug>, not "root"\n$/],
      [['history', 'acme/hello', '--limit', '0'], /^swarm: --limit must be a positive whole number, not "0"\n$/],
      [['executions', 'list', 'acme/hello', '--limit', 'ten'], /^swarm: --limit must be a positive whole number, not "ten"\n$/],
      [['gc', '--keep', '1.5'], /^swarm: --keep must be a positive whole number, not "1\.5"\n$/],
      [['activate', 'acme/hello', '02'], /^swarm: version must be a version number \(1, 2, …\), not "02"\n$/],
      [['activate', 'acme/hello', '2', '--expect', 'latest'], /^swarm: --expect must be a version number/],
      [['versions', 'acme'], /^swarm: workflow must be a workflow id or tenant\/name, not "acme"\n$/],
      [['workflows', 'create', 'acme'], /^swarm: workflow must be of the form tenant\/name, not "acme"\n$/],
      [['canary', 'acme/hello', '2', '--weight', '100'], /^swarm: --weight must be a percentage from 1 to 99, not "100"\n$/],
      [['gc', '--older-than', 'soon'], /^swarm: --older-than must be a duration like 30d, 12h, 90m or 45s, not "soon"\n$/],
    ];
    for (const [args, stderr] of cases) {
      // An unreachable registry: a command that got past its checks would fail differently.
      const r = await swarmInProcess([...args, '--url', 'http://127.0.0.1:9', '--token', 'swt_unused']);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(stderr);
      expect(r.stdout).toBe('');
    }
  });

  it("exits 2 on bad usage, with commander's message and the hint", async () => {
    const r = await swarmInProcess(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("error: unknown command 'frobnicate'\n(run with --help for usage)\n");
  });

  it('exits 1 with one line when the registry refuses', async () => {
    const notFound = await swarm(['workflows', 'list', 'nope']);
    expect([notFound.code, notFound.stdout, notFound.stderr]).toEqual([1, '', 'swarm: tenant "nope" not found\n']);
    const noToken = await swarmInProcess(['tenants', 'list', '--url', reg.url]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/^swarm: no API token \(hint: set SWARM_TOKEN or pass --token/);
  });
});
