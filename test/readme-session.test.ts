/**
 * The README's release session is a contract: this runs its `console` block command by
 * command against a real registry (PostgreSQL + S3) and compares what each command
 * prints with what the README shows, after masking what differs run to run (times,
 * ids, hashes, sizes) and collapsing runs of spaces (table columns widen with them).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fencedBlocks } from './support/markdown.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let reg: TestRegistry;
let work: string;
beforeAll(async () => {
  reg = await startTestRegistry({ storage: 's3' });
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-readme-'));
});
afterAll(async () => {
  await reg?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** Steps of a console block: each `$ command` with the lines it printed. */
function steps(block: string): Array<{ command: string; expected: string[] }> {
  const out: Array<{ command: string; expected: string[] }> = [];
  for (const line of block.trimEnd().split('\n')) {
    if (line.startsWith('$ ')) out.push({ command: line.slice(2), expected: [] });
    else out.at(-1)!.expected.push(line);
  }
  return out;
}

const mask = (text: string) =>
  text
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<id>')
    .replace(/\b[0-9a-f]{64}\b/g, '<key id>')
    .replace(/sha256:[0-9a-f]{12}|\b[0-9a-f]{12}\b/g, '<hash>')
    .replace(/\b\d+(\.\d+)? (B|KiB|MiB)\b/g, '<size>')
    .replace(/ +/g, ' ')
    .trimEnd();

/**
 * Runs README commands in bash, `pnpm swarm` being the CLI from source and `pnpm --filter`
 * the workspace's pnpm; nothing else of pnpm.
 */
function run(command: string, r = reg, cwd = work): Promise<{ code: number; stdout: string; stderr: string }> {
  const cli = `${path.join(root, 'node_modules/.bin/tsx')} ${path.join(root, 'packages/sdk/src/cli/main.ts')}`;
  const script = `pnpm() { if [ "$1" = --filter ]; then command pnpm --dir ${root} "$@"; return; fi; [ "$1" = swarm ] || exit 97; shift; ${cli} "$@"; }\n${command}`;
  return new Promise((resolve) => {
    execFile(
      'bash',
      ['-euo', 'pipefail', '-c', script],
      {
        cwd,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, SWARM_URL: r.url, SWARM_TOKEN: r.adminToken },
        timeout: 180_000,
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Runs a console block of the README command by command, comparing what each prints with what it shows. */
async function runSession(marker: string, mustHave: string[]) {
  const readme = await fs.readFile(path.join(root, 'README.md'), 'utf8');
  const session = fencedBlocks(readme).filter((b) => b.marker === marker);
  expect(session).toHaveLength(1);
  const all = steps(session[0]!.body);
  expect(all.map((s) => s.command.split(' ').slice(0, 3).join(' '))).toEqual(expect.arrayContaining(mustHave));
  for (const step of all) {
    const r = await run(step.command);
    expect(r.code, `${step.command}\n${r.stderr}`).toBe(0);
    expect(mask(r.stdout).split('\n').filter(Boolean), step.command).toEqual(step.expected.map(mask));
  }
}

it('runs the release session of the README and prints what it shows', async () => {
  await runSession('session: test/readme-session.test.ts', [
    'pnpm swarm push',
    'pnpm swarm canary',
    'pnpm swarm promote',
    'pnpm swarm rollback',
    'pnpm swarm history',
  ]);
}, 300_000);

// After the release session, before the signed push (which makes acme enforce signatures).
it("runs the README's VM block on what the session left", async () => {
  const readme = await fs.readFile(path.join(root, 'README.md'), 'utf8');
  // The VM block runs after the session, on what it left (#16: it used to fail with exit 64).
  const [vm] = fencedBlocks(readme).filter((b) => b.marker === 'runs after the session: test/readme-session.test.ts');
  expect(vm?.body).toContain('pnpm swarm spawn acme/hello');
  const r = await run(vm!.body.replaceAll('API_KEY=…', 'API_KEY=readme-secret-value'));
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain('hello, v1');
  expect(r.stdout).toMatch(/out \| hello, v1/);
  expect(r.stdout).not.toContain('readme-secret-value');
}, 600_000);

// After the release session: tenant acme exists.
it('runs the signed-push example of the README and prints what it shows', async () => {
  await runSession('session: test/readme-session.test.ts (signed push)', [
    'pnpm swarm keys',
    'pnpm swarm trust',
    'pnpm swarm policy',
    'pnpm swarm push',
  ]);
  expect((await fs.stat(path.join(work, 'ci.key'))).mode & 0o777).toBe(0o600);
}, 300_000);

it('runs every command block of "Using it" that a user is told to run', async () => {
  const readme = await fs.readFile(path.join(root, 'README.md'), 'utf8');
  const blocks = fencedBlocks(readme).filter((b) => b.marker === 'runs: test/readme-session.test.ts');
  expect(blocks.map((b) => b.body.split('\n')[0])).toEqual([expect.stringContaining('export SWARM_URL='), expect.stringContaining('curl')]);
  const fresh = await startTestRegistry({ storage: 'fs' });
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-readme-using-'));
  try {
    // The placeholders get real values: this registry's URL and admin token.
    await fs.mkdir(path.join(dir, '.swarm'));
    await fs.writeFile(path.join(dir, '.swarm/admin-token'), fresh.adminToken);
    const using = await run(blocks[0]!.body.replaceAll('http://127.0.0.1:3000', fresh.url), fresh, dir);
    expect(using.code, using.stderr).toBe(0);
    expect(using.stdout).toContain('pushed version 2 of acme/hello');
    expect(JSON.parse(await fs.readFile(path.join(dir, 'my-workflow/swarm.json'), 'utf8'))).toEqual({ entrypoint: ['sh', 'main.sh'] });
    const packed = await run('pnpm swarm pack ./my-workflow -o bundle.tar.gz', fresh, dir);
    expect(packed.code, packed.stderr).toBe(0);
    const curl = await run(blocks[1]!.body, fresh, dir);
    expect(curl.code, curl.stderr).toBe(0);
    expect(curl.stdout).toContain('"version"');
  } finally {
    await fresh.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 300_000);
