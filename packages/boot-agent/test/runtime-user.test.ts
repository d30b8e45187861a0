/**
 * The runtime user (issue #12 §1): an agent running as root runs the workflow as the
 * unprivileged user its own settings name (SWARM_RUNTIME_USER; the sandbox says `nobody`),
 * never as one the metadata names. As another uid the workflow cannot read the agent's
 * /proc/<pid>/environ or /proc/<pid>/mem (the kernel's ptrace access rules), signal it, or
 * change, replace or delete the bundle's files (root's, and hard links of the cache's
 * tree), but it can create files in its working directory. Before, it ran as root.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, type TestContext, test } from 'vitest';
import { eventRecorder } from './support/events.js';
import { type TarEntry, bundle, lastLine, sandbox, serveBundle } from './support/fixtures.js';

const EXECUTION = '0b7c4a8e-5d3f-4a2b-9c1d-2e3f4a5b6c7d';
const AGENT_TOKEN = 'agent-token-1';

/** What the workflow can do to its agent and its bundle, printed as `PROBE <json>`. */
const probe = `const fs = require('node:fs');
const attempt = (f) => { try { f(); return 'ok'; } catch (err) { return err.code; } };
const parent = process.ppid;
console.log('PROBE ' + JSON.stringify({
  uid: process.getuid(),
  gid: process.getgid(),
  groups: process.getgroups(),
  home: process.env.HOME,
  agentVariables: Object.keys(process.env).filter((k) => /^(SWARM_|BUNDLE_)/.test(k)),
  environ: attempt(() => fs.readFileSync('/proc/' + parent + '/environ')),
  mem: attempt(() => fs.closeSync(fs.openSync('/proc/' + parent + '/mem', 'r'))),
  signal: attempt(() => process.kill(parent, 0)),
  writeBundleFile: attempt(() => fs.appendFileSync('data/config.txt', 'edited')),
  chmodBundleFile: attempt(() => fs.chmodSync('data/config.txt', 0o666)),
  replaceBundleFile: attempt(() => fs.renameSync('probe.js', 'data/moved.js')),
  deleteBundleFile: attempt(() => fs.unlinkSync('swarm.json')),
  createFile: attempt(() => fs.writeFileSync('made-by-the-workflow.txt', 'mine')),
  readCache: attempt(() => fs.readdirSync('../cache')), // the sandbox's cache, beside the workflow directory
}));
`;
const CONFIG = 'threshold=3\n';
const entries = (extra: TarEntry[] = []): TarEntry[] => [
  { path: 'swarm.json', body: JSON.stringify({ entrypoint: ['node', 'probe.js'] }) },
  { path: 'probe.js', body: probe },
  { path: 'data/config.txt', body: CONFIG },
  ...extra,
];

const probed = (stdout: string) => {
  const line = stdout.split('\n').find((l) => l.startsWith('PROBE '));
  return line ? (JSON.parse(line.slice('PROBE '.length)) as Record<string, unknown>) : undefined;
};

async function setup(ctx: TestContext, metadata: Record<string, unknown> = {}) {
  const sb = await sandbox();
  ctx.onTestFinished(() => sb.remove());
  const recorder = await eventRecorder(AGENT_TOKEN);
  ctx.onTestFinished(() => recorder.close());
  const b = bundle(entries());
  const store = await serveBundle(b.bytes);
  ctx.onTestFinished(() => store.close());
  await fs.writeFile(
    path.join(sb.dir, 'metadata.json'),
    JSON.stringify({ apiUrl: recorder.url, execution: { id: EXECUTION, agentToken: AGENT_TOKEN }, ...metadata }),
  );
  return { sb, recorder, b, store };
}

describe.runIf(process.getuid?.() === 0)('the runtime user of an agent running as root', () => {
  test('runs the workflow as SWARM_RUNTIME_USER: kept out of the agent and its bundle, free in its directory', async (ctx) => {
    const { expect } = ctx;
    const { sb, b, store } = await setup(ctx);

    const run = await sb.fetch(store.url(), b.hash, [], { SWARM_AGENT_TOKEN: AGENT_TOKEN });

    expect(run.code, run.stderr).toBe(0);
    expect(probed(run.stdout)).toEqual({
      uid: 65534,
      gid: 65534,
      groups: [65534],
      home: '/nonexistent',
      agentVariables: [],
      environ: 'EACCES',
      mem: 'EACCES',
      signal: 'EPERM',
      writeBundleFile: 'EACCES',
      chmodBundleFile: 'EPERM',
      replaceBundleFile: 'EPERM', // the sticky bit: not its file to move
      deleteBundleFile: 'EPERM',
      createFile: 'ok',
      readCache: 'EACCES', // other workflows' bundles may be cached there
    });
    // The bundle as unpacked, root's; the cache's tree (the same inodes) unchanged.
    const config = path.join(sb.workflowDir, 'data/config.txt');
    expect(await fs.readFile(config, 'utf8')).toBe(CONFIG);
    expect(await fs.stat(config)).toMatchObject({ uid: 0, mode: 0o100644 });
    expect(await fs.readFile(path.join(sb.cacheDir, `${b.hash}.tree/files/data/config.txt`), 'utf8')).toBe(CONFIG);
    expect(await fs.readFile(path.join(sb.workflowDir, 'made-by-the-workflow.txt'), 'utf8')).toBe('mine');
    expect((await fs.stat(sb.workflowDir)).mode & 0o7777).toBe(0o1777);
    expect((await fs.stat(path.join(sb.workflowDir, 'data'))).mode & 0o7777).toBe(0o755);
  });

  test('ignores a runtime user in the metadata: a compromised registry cannot choose root', async (ctx) => {
    const { expect } = ctx;
    const { sb, b, store } = await setup(ctx, { runtime: { command: ['node', 'probe.js'], user: 'root' }, runtimeUser: 'root' });

    const run = await sb.fetch(store.url(), b.hash);

    expect(run.code, run.stderr).toBe(0);
    expect(probed(run.stdout)).toMatchObject({ uid: 65534, environ: 'EACCES' });
  });

  test('stops before fetching anything when the runtime user does not exist (64), and says so', async (ctx) => {
    const { expect } = ctx;
    const { sb, b, store, recorder } = await setup(ctx);
    const before = await sb.tree();

    const run = await sb.fetch(store.url(), b.hash, [], { SWARM_RUNTIME_USER: 'no-such-user-here' });

    expect({ code: run.code, message: lastLine(run.stderr) }).toEqual({
      code: 64,
      message:
        'swarm-boot-agent: bad_metadata: the runtime user "no-such-user-here" is not in /etc/passwd (SWARM_RUNTIME_USER, --runtime-user)',
    });
    expect(run.stdout).not.toContain('PROBE');
    expect(store.requests).toHaveLength(0);
    expect(await sb.tree()).toEqual(before);
    expect(recorder.events.map((e) => [e.type, e.data.reason])).toEqual([
      ['metadata_loaded', undefined],
      ['failed', 'bad_metadata'],
    ]);
  });

  test('runs the workflow as root only when its own settings say root', async (ctx) => {
    const { expect } = ctx;
    const { sb, b, store } = await setup(ctx);

    const run = await sb.fetch(store.url(), b.hash, ['--runtime-user', 'root']);

    expect(run.code, run.stderr).toBe(0);
    expect(probed(run.stdout)).toMatchObject({ uid: 0, environ: 'ok', writeBundleFile: 'ok' });
  });
});
