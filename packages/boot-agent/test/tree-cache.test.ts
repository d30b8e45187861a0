/**
 * The cache's unpacked trees: after a cold boot the cache holds the bundle's archive and
 * a tree of it (`<hash>.tree/files/`, `manifest.json`); a warm boot checks the tree
 * against the archive (which must hash to the bundle's sha256) and hard-links its files
 * into the workflow directory instead of unpacking. Anyone may have written the cache, so
 * every kind of tampering with a tree must be caught, the tree discarded, and the bundle
 * unpacked from the verified archive, with the workflow running the bundle's own bytes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { CHECK_ONLY, DEFAULT_BUNDLE_LIMITS, walkArchive } from '@swarm/sdk/bundle-rules';
import { describe, type ExpectStatic, type TestContext, test } from 'vitest';
import { eventRecorder } from './support/events.js';
import {
  type Blob,
  bundle,
  leftoverProblems,
  noise,
  type Sandbox,
  sandbox,
  sendBundle,
  serve,
  serveBundle,
  type TestServer,
} from './support/fixtures.js';

const MESSAGE = 'hello from the bundle';
/** Prints the bundle's message and the size of its large file: what ran is visible in the output. */
const treeBundle = (big = noise(1536 * 1024)): Blob =>
  bundle([
    {
      path: 'swarm.json',
      body: JSON.stringify({
        entrypoint: ['sh', '-c', 'echo WORKFLOW-RAN; cat app/msg.txt; echo; wc -c < data/big.bin; cksum data/big.bin'],
      }),
    },
    { path: 'app/', type: 'Directory' },
    { path: 'app/msg.txt', body: MESSAGE },
    { path: 'app/run.sh', body: '#!/bin/sh\necho run\n', mode: 0o755 },
    // Over 1 MiB: compared chunk by chunk as it streams, not collected whole.
    { path: 'data/big.bin', body: big },
  ]);

const EXPECTED_OUTPUT = (big = noise(1536 * 1024)) => `WORKFLOW-RAN\n${MESSAGE}\n${big.length}\n`;

async function started(ctx: TestContext, server: Promise<TestServer>): Promise<TestServer> {
  const s = await server;
  ctx.onTestFinished(() => s.close());
  return s;
}

/** A sandbox whose cache a first (cold) boot filled with the bundle's archive and tree; `extra`: flags for every boot. */
async function warmed(ctx: TestContext, b: Blob = treeBundle(), extra: string[] = []) {
  const { expect } = ctx;
  const sb = await sandbox();
  ctx.onTestFinished(() => sb.remove());
  const store = await started(ctx, serveBundle(b.bytes));
  const cold = await sb.fetch(store.url(), b.hash, extra);
  expect(cold.code, cold.stderr).toBe(0);
  expect(cold.stdout).toContain(EXPECTED_OUTPUT());
  const tree = path.join(sb.cacheDir, `${b.hash}.tree`);
  expect((await fs.readdir(tree)).sort()).toEqual(['files', 'manifest.json']);
  // Under load a cold download can be retried: what counts is that the warm boots fetch nothing more.
  return { sb, b, store, tree, files: path.join(tree, 'files'), extra, coldRequests: store.requests.length };
}

const ino = async (p: string) => (await fs.lstat(p)).ino;

async function expectClean(expect: ExpectStatic, sb: Sandbox, cached: string[], alsoAllowed: string[] = []) {
  expect(await leftoverProblems(sb, { cached, alsoAllowed })).toEqual([]);
}

/** The next boot notices, discards the tree, unpacks the verified archive, runs the real bundle and keeps a fresh tree. */
async function expectDiscarded(ctx: TestContext, w: Awaited<ReturnType<typeof warmed>>, reason: RegExp, alsoAllowed: string[] = []) {
  const { expect } = ctx;
  const run = await w.sb.fetch(w.store.url(), w.b.hash, w.extra);
  expect(run.code, run.stderr).toBe(0);
  expect(run.stderr).toMatch(new RegExp(`discarded the cached tree of ${w.b.hash.slice(0, 12)}: .*${reason.source}`));
  expect(run.stderr).toContain(`cache hit ${w.b.hash.slice(0, 12)} (${w.b.bytes.length} bytes)`); // the archive, not the tree
  expect(run.stdout).toContain(EXPECTED_OUTPUT());
  expect(await fs.readFile(path.join(w.sb.workflowDir, 'app/msg.txt'), 'utf8')).toBe(MESSAGE);
  expect((await fs.lstat(path.join(w.sb.workflowDir, 'app/msg.txt'))).mode & 0o7777).toBe(0o644);
  expect(w.store.requests).toHaveLength(w.coldRequests);
  // The new tree is the one this boot unpacked, and the boot after uses it.
  expect(await ino(path.join(w.files, 'app/msg.txt'))).toBe(await ino(path.join(w.sb.workflowDir, 'app/msg.txt')));
  const again = await w.sb.fetch(w.store.url(), w.b.hash, w.extra);
  expect(again.code, again.stderr).toBe(0);
  expect(again.stderr).toContain('unpacked tree');
  await expectClean(expect, w.sb, [w.b.hash], alsoAllowed);
  return run;
}

describe.concurrent('the cache keeps an unpacked tree', () => {
  test('a warm boot links the cached tree into the workflow directory instead of unpacking, and says so', async (ctx) => {
    const { expect } = ctx;
    const w = await warmed(ctx);
    const recorder = await eventRecorder();
    ctx.onTestFinished(() => recorder.close());
    await fs.writeFile(
      path.join(w.sb.dir, 'metadata.json'),
      JSON.stringify({ apiUrl: recorder.url, execution: { id: '6f1c2b9e-3d4a-4e5f-8a7b-1c2d3e4f5a6b', agentToken: 'agent-token-1' } }),
    );
    const before = {
      msg: await ino(path.join(w.files, 'app/msg.txt')),
      big: await ino(path.join(w.files, 'data/big.bin')),
      workflow: await ino(w.sb.workflowDir),
    };

    const run = await w.sb.fetch(w.store.url(), w.b.hash);

    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(EXPECTED_OUTPUT());
    expect(run.stderr).toContain(`cache hit ${w.b.hash.slice(0, 12)} (${w.b.bytes.length} bytes, unpacked tree)`);
    expect(recorder.events.map((e) => e.type)).toEqual([
      'metadata_loaded',
      'cache_hit',
      'unpacked',
      'runtime_started',
      'output',
      'runtime_exited',
    ]);
    expect(recorder.events[1]!.data).toEqual({ bytes: w.b.bytes.length, from: 'tree' });
    expect(recorder.events[2]!.data).toMatchObject({ files: 4, from: 'tree' });
    // Not unpacked: the workflow's files are the tree's own inodes, in a new workflow directory.
    expect(await ino(path.join(w.sb.workflowDir, 'app/msg.txt'))).toBe(before.msg);
    expect(await ino(path.join(w.sb.workflowDir, 'data/big.bin'))).toBe(before.big);
    expect(await ino(w.sb.workflowDir)).not.toBe(before.workflow);
    expect((await fs.lstat(path.join(w.sb.workflowDir, 'app/run.sh'))).mode & 0o7777).toBe(0o755);
    expect(w.store.requests).toHaveLength(w.coldRequests);
    await expectClean(expect, w.sb, [w.b.hash]);
  });

  test('a file in the tree with one byte changed is caught, the tree discarded and the archive unpacked', async (ctx) => {
    const w = await warmed(ctx);
    // Same size, and the manifest still agrees: only a comparison with the archive can tell.
    await fs.writeFile(path.join(w.files, 'app/msg.txt'), MESSAGE.replace(/e$/, 'E'));
    const run = await expectDiscarded(ctx, w, /"app\/msg.txt" differs from the bundle/);
    ctx.expect(run.stdout).not.toContain('bundlE');
  });

  test('a byte changed deep inside a large (streamed) file is caught', async (ctx) => {
    const w = await warmed(ctx);
    const file = path.join(w.files, 'data/big.bin');
    const handle = await fs.open(file, 'r+');
    const one = Buffer.alloc(1);
    await handle.read(one, 0, 1, 1_400_000);
    one[0]! ^= 0x01;
    await handle.write(one, 0, 1, 1_400_000);
    await handle.close();
    await expectDiscarded(ctx, w, /"data\/big.bin" differs from the bundle/);
  });

  test('an extra file in the tree is caught', async (ctx) => {
    const w = await warmed(ctx);
    await fs.writeFile(path.join(w.files, 'app/extra.js'), 'planted');
    await expectDiscarded(ctx, w, /"app\/extra.js" is not in the bundle/);
    ctx.expect(await fs.readdir(path.join(w.sb.workflowDir, 'app'))).not.toContain('extra.js');
  });

  test('an extra directory in the tree is caught', async (ctx) => {
    const w = await warmed(ctx);
    await fs.mkdir(path.join(w.files, 'node_modules'));
    await expectDiscarded(ctx, w, /"node_modules" is not in the bundle/);
  });

  test('a file removed from the tree is caught', async (ctx) => {
    const w = await warmed(ctx);
    await fs.rm(path.join(w.files, 'app/run.sh'));
    await expectDiscarded(ctx, w, /app\/run.sh/);
  });

  test('a changed mode in the tree is caught (0644 made 0755)', async (ctx) => {
    const w = await warmed(ctx);
    await fs.chmod(path.join(w.files, 'app/msg.txt'), 0o755);
    await expectDiscarded(ctx, w, /"app\/msg.txt" has mode 755/);
  });

  test('a setuid bit added in the tree is caught', async (ctx) => {
    const w = await warmed(ctx);
    await fs.chmod(path.join(w.files, 'app/run.sh'), 0o4755);
    await expectDiscarded(ctx, w, /"app\/run.sh" has mode 4755/);
  });

  test('a symlink planted in the tree, even to a file with the right bytes, is caught', async (ctx) => {
    const w = await warmed(ctx);
    const outside = path.join(w.sb.dir, 'outside-msg.txt');
    await fs.writeFile(outside, MESSAGE);
    await fs.rm(path.join(w.files, 'app/msg.txt'));
    await fs.symlink(outside, path.join(w.files, 'app/msg.txt'));
    await expectDiscarded(ctx, w, /"app\/msg.txt" is neither a regular file nor a directory/, ['outside-msg.txt']);
    ctx.expect((await fs.lstat(path.join(w.sb.workflowDir, 'app/msg.txt'))).isFile()).toBe(true);
  });

  test('a symlinked directory in the tree is caught', async (ctx) => {
    const w = await warmed(ctx);
    const outside = path.join(w.sb.dir, 'outside-app');
    await fs.cp(path.join(w.files, 'app'), outside, { recursive: true });
    await fs.rm(path.join(w.files, 'app'), { recursive: true });
    await fs.symlink(outside, path.join(w.files, 'app'));
    await expectDiscarded(ctx, w, /"app" is neither a regular file nor a directory/, ['outside-app/']);
  });

  test('a manifest naming another bundle is caught', async (ctx) => {
    const w = await warmed(ctx);
    const m = JSON.parse(await fs.readFile(path.join(w.tree, 'manifest.json'), 'utf8'));
    await fs.writeFile(path.join(w.tree, 'manifest.json'), JSON.stringify({ ...m, bundle: 'e'.repeat(64) }));
    await expectDiscarded(ctx, w, /its manifest names bundle e{64}/);
  });

  test('a manifest whose counts disagree with the bundle is caught', async (ctx) => {
    const w = await warmed(ctx);
    const m = JSON.parse(await fs.readFile(path.join(w.tree, 'manifest.json'), 'utf8'));
    await fs.writeFile(path.join(w.tree, 'manifest.json'), JSON.stringify({ ...m, bytes: 1 }));
    await expectDiscarded(ctx, w, /its manifest does not count what the bundle holds/);
  });

  test('a manifest that is not JSON is caught', async (ctx) => {
    const w = await warmed(ctx);
    await fs.writeFile(path.join(w.tree, 'manifest.json'), '{"bundle":');
    await expectDiscarded(ctx, w, /its manifest is not valid/);
  });

  test('a whole tree forged with a consistent manifest for a different bundle is never run', async (ctx) => {
    const { expect } = ctx;
    // What an attacker who can write the cache would do: the tree and manifest of bundle B, under bundle A's name.
    const forged = treeBundle(noise(1536 * 1024).reverse());
    const other = await warmed(ctx, forged);
    const w = await warmed(ctx);
    await fs.rm(w.tree, { recursive: true });
    await fs.cp(other.tree, w.tree, { recursive: true });
    const m = JSON.parse(await fs.readFile(path.join(w.tree, 'manifest.json'), 'utf8'));
    await fs.writeFile(path.join(w.tree, 'manifest.json'), JSON.stringify({ ...m, bundle: w.b.hash }));
    await expectDiscarded(ctx, w, /"data\/big.bin" differs from the bundle/);
    expect(await fs.readFile(path.join(w.sb.workflowDir, 'data/big.bin'))).toEqual(noise(1536 * 1024));
  });

  test('a corrupt cached archive with a good tree is refetched, as before: the tree is only as good as the archive', async (ctx) => {
    const { expect } = ctx;
    const w = await warmed(ctx);
    const archive = path.join(w.sb.cacheDir, `${w.b.hash}.tar.gz`);
    const bytes = await fs.readFile(archive);
    bytes[bytes.length - 20]! ^= 0xff;
    await fs.writeFile(archive, bytes);

    const run = await w.sb.fetch(w.store.url(), w.b.hash);

    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('discarded the cached tree');
    expect(run.stderr).toContain('discarded a corrupt cached bundle');
    expect(run.stdout).toContain(EXPECTED_OUTPUT());
    expect(w.store.requests).toHaveLength(2);
    await expectClean(expect, w.sb, [w.b.hash]);
  });

  test('an unsafe bundle is refused (66) even with a tree planted for it: the tree check applies the unpacking rules', async (ctx) => {
    const { expect } = ctx;
    const sb = await sandbox();
    ctx.onTestFinished(() => sb.remove());
    const b = bundle([
      { path: 'swarm.json', body: JSON.stringify({ entrypoint: ['sh', '-c', 'echo WORKFLOW-RAN'] }) },
      { path: 'passwd', type: 'SymbolicLink', linkpath: '/etc/passwd' },
    ]);
    // The verified archive is in the cache (a cold boot caches before it unpacks), and someone planted a tree beside it.
    await fs.mkdir(path.join(sb.cacheDir, `${b.hash}.tree`, 'files'), { recursive: true });
    await fs.writeFile(path.join(sb.cacheDir, `${b.hash}.tar.gz`), b.bytes);
    await fs.writeFile(
      path.join(sb.cacheDir, `${b.hash}.tree`, 'files', 'swarm.json'),
      JSON.stringify({ entrypoint: ['sh', '-c', 'echo WORKFLOW-RAN'] }),
    );
    await fs.writeFile(path.join(sb.cacheDir, `${b.hash}.tree`, 'files', 'passwd'), await fs.readFile('/etc/passwd'));
    await fs.writeFile(
      path.join(sb.cacheDir, `${b.hash}.tree`, 'manifest.json'),
      JSON.stringify({ bundle: b.hash, files: 2, directories: 0, bytes: 0 }),
    );
    const store = await started(ctx, serveBundle(b.bytes));

    const run = await sb.fetch(store.url(), b.hash);

    expect(run.code).toBe(66);
    expect(run.stderr).toContain('discarded the cached tree');
    expect(run.stderr).toMatch(/entry "passwd" is a SymbolicLink/);
    expect(run.stdout).not.toContain('WORKFLOW-RAN');
    expect(await fs.readdir(sb.cacheDir)).toEqual([`${b.hash}.tar.gz`]);
  });

  test('two agents booting warm from one cache at once both use the tree and leave it intact', async (ctx) => {
    const { expect } = ctx;
    const w = await warmed(ctx);
    const otherWorkflowDir = path.join(w.sb.dir, 'workflow-b');

    const [one, two] = await Promise.all([
      w.sb.fetch(w.store.url(), w.b.hash),
      w.sb.fetch(w.store.url(), w.b.hash, [], { SWARM_WORKFLOW_DIR: otherWorkflowDir }),
    ]);

    expect([one.code, two.code], one.stderr + two.stderr).toEqual([0, 0]);
    for (const r of [one, two]) {
      expect(r.stderr).toContain('unpacked tree');
      expect(r.stdout).toContain(EXPECTED_OUTPUT());
    }
    expect(w.store.requests).toHaveLength(w.coldRequests);
    expect(await fs.readFile(path.join(otherWorkflowDir, 'app/msg.txt'), 'utf8')).toBe(MESSAGE);
    expect(await leftoverProblems(w.sb, { cached: [w.b.hash], alsoAllowed: ['workflow-b/'] })).toEqual([]);
    const third = await w.sb.fetch(w.store.url(), w.b.hash);
    expect(third.stderr).toContain('unpacked tree');
  });

  test('two agents booting cold at once publish one complete tree, never a partial one', async (ctx) => {
    const { expect } = ctx;
    const sb = await sandbox();
    ctx.onTestFinished(() => sb.remove());
    const b = treeBundle();
    // Hold each response until both agents have asked (at most 20 s), so both unpack and publish at once.
    let release!: () => void;
    const bothAsked = new Promise<void>((r) => (release = r));
    const store = await started(
      ctx,
      serve(async (req, res, n) => {
        if (n >= 2) release();
        await Promise.race([bothAsked, new Promise((r) => setTimeout(r, 20_000))]);
        sendBundle(req, res, b.bytes);
      }),
    );

    const [one, two] = await Promise.all([
      sb.fetch(store.url(), b.hash),
      sb.fetch(store.url(), b.hash, [], { SWARM_WORKFLOW_DIR: path.join(sb.dir, 'workflow-b') }),
    ]);

    expect([one.code, two.code], one.stderr + two.stderr).toEqual([0, 0]);
    expect((await fs.readdir(sb.cacheDir)).sort()).toEqual([`${b.hash}.tar.gz`, `${b.hash}.tree`]);
    expect(await leftoverProblems(sb, { cached: [b.hash], alsoAllowed: ['workflow-b/'] })).toEqual([]);
    const warm = await sb.fetch(store.url(), b.hash);
    expect(warm.code, warm.stderr).toBe(0);
    expect(warm.stderr).toContain('unpacked tree');
  });

  test('eviction counts trees: past SWARM_CACHE_MAX_BYTES the least recently used bundle goes, archive and tree together', async (ctx) => {
    const { expect } = ctx;
    const sb = await sandbox();
    ctx.onTestFinished(() => sb.remove());
    // Incompressible: each archive is ~300 KiB and so is its tree. Two archives fit in
    // 1,000,000 bytes; two archives and their trees (~1.2 MB) do not.
    const a = bundle([
      { path: 'swarm.json', body: '{"entrypoint":["true"]}' },
      { path: 'a.bin', body: noise(300 * 1024) },
    ]);
    const b = bundle([
      { path: 'swarm.json', body: '{"entrypoint":["true"]}' },
      { path: 'b.bin', body: noise(300 * 1024).reverse() },
    ]);
    const store = await started(
      ctx,
      serve((req, res) => sendBundle(req, res, req.url === '/a.tar.gz' ? a.bytes : b.bytes)),
    );
    const env = { SWARM_CACHE_MAX_BYTES: '1000000' };

    expect((await sb.fetch(store.url('a.tar.gz'), a.hash, [], env)).code).toBe(0);
    expect((await fs.readdir(sb.cacheDir)).sort()).toEqual([`${a.hash}.tar.gz`, `${a.hash}.tree`]);
    expect((await sb.fetch(store.url('b.tar.gz'), b.hash, [], env)).code).toBe(0);

    expect((await fs.readdir(sb.cacheDir)).sort()).toEqual([`${b.hash}.tar.gz`, `${b.hash}.tree`]);
    expect(await leftoverProblems(sb, { cached: [b.hash] })).toEqual([]);
  });

  test('partial downloads and trees a crash left behind go once abandoned (an hour untouched); fresh ones stay', async (ctx) => {
    const { expect } = ctx;
    const sb = await sandbox();
    ctx.onTestFinished(() => sb.remove());
    const b = treeBundle();
    const store = await started(ctx, serveBundle(b.bytes));
    await fs.mkdir(sb.cacheDir, { recursive: true });
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await fs.writeFile(path.join(sb.cacheDir, '.partial-1-stale'), 'torn download');
    await fs.utimes(path.join(sb.cacheDir, '.partial-1-stale'), old, old);
    await fs.mkdir(path.join(sb.cacheDir, '.partial-tree-1-stale', 'files'), { recursive: true });
    await fs.utimes(path.join(sb.cacheDir, '.partial-tree-1-stale'), old, old);
    await fs.writeFile(path.join(sb.cacheDir, '.partial-2-live'), 'another agent is downloading this');

    expect((await sb.fetch(store.url(), b.hash)).code).toBe(0);
    expect((await fs.readdir(sb.cacheDir)).sort()).toEqual(['.partial-2-live', `${b.hash}.tar.gz`, `${b.hash}.tree`]);
  });

  test('workflow staging directories a killed agent left go once abandoned (an hour untouched); fresh ones stay', async (ctx) => {
    const { expect } = ctx;
    const sb = await sandbox();
    ctx.onTestFinished(() => sb.remove());
    const b = treeBundle();
    const store = await started(ctx, serveBundle(b.bytes));
    const parent = path.dirname(sb.workflowDir);
    const base = path.basename(sb.workflowDir);
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000);
    for (const name of [`.${base}.staging-stale1`, `.${base}.staging-stale2.old`]) {
      await fs.mkdir(path.join(parent, name, 'lib'), { recursive: true });
      await fs.writeFile(path.join(parent, name, 'lib', 'half.js'), 'half an unpack');
      await fs.utimes(path.join(parent, name), old, old);
    }
    await fs.mkdir(path.join(parent, `.${base}.staging-live`));
    // Not this workflow's: another name's staging directory, abandoned as long.
    await fs.mkdir(path.join(parent, '.other.staging-stale'));
    await fs.utimes(path.join(parent, '.other.staging-stale'), old, old);

    expect((await sb.fetch(store.url(), b.hash)).code).toBe(0);
    const left = (await fs.readdir(parent)).filter((n) => n.includes('.staging-')).sort();
    expect(left).toEqual(['.other.staging-stale', `.${base}.staging-live`]);
  });

  test('(control) with room for both, nothing is evicted', async (ctx) => {
    const { expect } = ctx;
    const sb = await sandbox();
    ctx.onTestFinished(() => sb.remove());
    const a = bundle([
      { path: 'swarm.json', body: '{"entrypoint":["true"]}' },
      { path: 'a.bin', body: noise(300 * 1024) },
    ]);
    const b = bundle([
      { path: 'swarm.json', body: '{"entrypoint":["true"]}' },
      { path: 'b.bin', body: noise(300 * 1024).reverse() },
    ]);
    const store = await started(
      ctx,
      serve((req, res) => sendBundle(req, res, req.url === '/a.tar.gz' ? a.bytes : b.bytes)),
    );
    const env = { SWARM_CACHE_MAX_BYTES: '1400000' };

    expect((await sb.fetch(store.url('a.tar.gz'), a.hash, [], env)).code).toBe(0);
    expect((await sb.fetch(store.url('b.tar.gz'), b.hash, [], env)).code).toBe(0);

    expect((await fs.readdir(sb.cacheDir)).sort()).toEqual(
      [`${a.hash}.tar.gz`, `${a.hash}.tree`, `${b.hash}.tar.gz`, `${b.hash}.tree`].sort(),
    );
  });
});

/** The bundle's tree digest, as the registry computes it at upload (the shared definition). */
async function digestOf(b: Blob): Promise<string> {
  const { treeDigest } = await walkArchive([b.bytes], DEFAULT_BUNDLE_LIMITS, CHECK_ONLY, { treeDigest: true });
  return treeDigest!;
}

/** With the tree digest in the metadata: the tree is checked by hashing its files, the archive is not read. */
const DIGEST_CHECKED = 'unpacked tree, checked against its tree digest';
const digestWarmed = async (ctx: TestContext, b: Blob = treeBundle()) => warmed(ctx, b, ['--bundle-tree-digest', await digestOf(b)]);

describe.concurrent("the tree checked against the registry's tree digest (no archive, no gunzip)", () => {
  test('a warm boot links the tree after hashing its files, without reading the cached archive', async (ctx) => {
    const { expect } = ctx;
    const w = await digestWarmed(ctx);
    const recorder = await eventRecorder();
    ctx.onTestFinished(() => recorder.close());
    await fs.writeFile(
      path.join(w.sb.dir, 'metadata.json'),
      JSON.stringify({ apiUrl: recorder.url, execution: { id: '6f1c2b9e-3d4a-4e5f-8a7b-1c2d3e4f5a6b', agentToken: 'agent-token-1' } }),
    );
    // Proof that the archive is not read: its bytes are garbage now (same size), and the warm boot does not notice.
    const archive = path.join(w.sb.cacheDir, `${w.b.hash}.tar.gz`);
    await fs.writeFile(archive, Buffer.alloc(w.b.bytes.length, 0x41));
    const msg = await ino(path.join(w.files, 'app/msg.txt'));

    const run = await w.sb.fetch(w.store.url(), w.b.hash, w.extra);

    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(EXPECTED_OUTPUT());
    expect(run.stderr).toContain(`cache hit ${w.b.hash.slice(0, 12)} (${w.b.bytes.length} bytes, ${DIGEST_CHECKED})`);
    expect(recorder.events[2]!.data).toMatchObject({ files: 4, from: 'tree', checkedBy: 'tree_digest' });
    expect(await ino(path.join(w.sb.workflowDir, 'app/msg.txt'))).toBe(msg);
    expect((await fs.lstat(path.join(w.sb.workflowDir, 'app/run.sh'))).mode & 0o7777).toBe(0o755);
    expect(w.store.requests).toHaveLength(w.coldRequests);
  });

  test('(control) without a digest the same garbage archive is caught: the archive check reads it', async (ctx) => {
    const { expect } = ctx;
    const w = await warmed(ctx);
    await fs.writeFile(path.join(w.sb.cacheDir, `${w.b.hash}.tar.gz`), Buffer.alloc(w.b.bytes.length, 0x41));
    const run = await w.sb.fetch(w.store.url(), w.b.hash);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('discarded the cached tree');
    expect(w.store.requests).toHaveLength(2);
  });

  const DIGEST_MISMATCH = /its tree digest is [0-9a-f]{64}, not the bundle's/;
  const tamperings: Array<[string, (w: Awaited<ReturnType<typeof warmed>>) => Promise<unknown>, RegExp, string[]?]> = [
    [
      'one byte changed in a small file',
      (w) => fs.writeFile(path.join(w.files, 'app/msg.txt'), MESSAGE.replace(/e$/, 'E')),
      DIGEST_MISMATCH,
    ],
    [
      'one byte changed deep inside a large file',
      async (w) => {
        const handle = await fs.open(path.join(w.files, 'data/big.bin'), 'r+');
        const one = Buffer.alloc(1);
        await handle.read(one, 0, 1, 1_400_000);
        one[0]! ^= 0x01;
        await handle.write(one, 0, 1, 1_400_000);
        await handle.close();
      },
      DIGEST_MISMATCH,
    ],
    ['an extra file', (w) => fs.writeFile(path.join(w.files, 'app/extra.js'), 'planted'), DIGEST_MISMATCH],
    ['an extra directory', (w) => fs.mkdir(path.join(w.files, 'node_modules')), DIGEST_MISMATCH],
    ['a file removed', (w) => fs.rm(path.join(w.files, 'app/run.sh')), DIGEST_MISMATCH],
    ['a mode changed (0644 made 0755)', (w) => fs.chmod(path.join(w.files, 'app/msg.txt'), 0o755), DIGEST_MISMATCH],
    ['a mode changed (0755 made 0644)', (w) => fs.chmod(path.join(w.files, 'app/run.sh'), 0o644), DIGEST_MISMATCH],
    ['a setuid bit added', (w) => fs.chmod(path.join(w.files, 'app/run.sh'), 0o4755), /"app\/run.sh" has mode 4755/],
    ['a group-writable file', (w) => fs.chmod(path.join(w.files, 'app/msg.txt'), 0o664), /"app\/msg.txt" has mode 664/],
    [
      'a symlink to a file with the right bytes',
      async (w) => {
        const outside = path.join(w.sb.dir, 'outside-msg.txt');
        await fs.writeFile(outside, MESSAGE);
        await fs.rm(path.join(w.files, 'app/msg.txt'));
        await fs.symlink(outside, path.join(w.files, 'app/msg.txt'));
      },
      /"app\/msg.txt" is neither a regular file nor a directory/,
      ['outside-msg.txt'],
    ],
    [
      'a symlinked directory',
      async (w) => {
        const outside = path.join(w.sb.dir, 'outside-app');
        await fs.cp(path.join(w.files, 'app'), outside, { recursive: true });
        await fs.rm(path.join(w.files, 'app'), { recursive: true });
        await fs.symlink(outside, path.join(w.files, 'app'));
      },
      /"app" is neither a regular file nor a directory/,
      ['outside-app/'],
    ],
    [
      'a file moved to another name',
      (w) => fs.rename(path.join(w.files, 'app/msg.txt'), path.join(w.files, 'app/msg2.txt')),
      DIGEST_MISMATCH,
    ],
    [
      'a manifest naming another bundle',
      async (w) => {
        const m = JSON.parse(await fs.readFile(path.join(w.tree, 'manifest.json'), 'utf8'));
        await fs.writeFile(path.join(w.tree, 'manifest.json'), JSON.stringify({ ...m, bundle: 'e'.repeat(64) }));
      },
      /its manifest names bundle e{64}/,
    ],
    [
      'a manifest whose counts disagree',
      async (w) => {
        const m = JSON.parse(await fs.readFile(path.join(w.tree, 'manifest.json'), 'utf8'));
        await fs.writeFile(path.join(w.tree, 'manifest.json'), JSON.stringify({ ...m, bytes: 1 }));
      },
      /its manifest does not count what the bundle holds/,
    ],
  ];
  for (const [what, tamper, reason, alsoAllowed] of tamperings) {
    test(`${what} in the tree is caught, the tree discarded and the verified archive unpacked`, async (ctx) => {
      const w = await digestWarmed(ctx);
      await tamper(w);
      const run = await expectDiscarded(ctx, w, reason, alsoAllowed);
      ctx.expect(run.stdout).not.toContain('bundlE');
    });
  }

  test('a whole tree forged for another bundle, manifest renamed, is never run', async (ctx) => {
    const { expect } = ctx;
    const other = await warmed(ctx, treeBundle(noise(1536 * 1024).reverse()));
    const w = await digestWarmed(ctx);
    await fs.rm(w.tree, { recursive: true });
    await fs.cp(other.tree, w.tree, { recursive: true });
    const m = JSON.parse(await fs.readFile(path.join(w.tree, 'manifest.json'), 'utf8'));
    await fs.writeFile(path.join(w.tree, 'manifest.json'), JSON.stringify({ ...m, bundle: w.b.hash }));
    await expectDiscarded(ctx, w, DIGEST_MISMATCH);
    expect(await fs.readFile(path.join(w.sb.workflowDir, 'data/big.bin'))).toEqual(noise(1536 * 1024));
  });

  test("a digest that is not the bundle's (wrong metadata) never lets a tree run: discarded, the archive decides", async (ctx) => {
    const { expect } = ctx;
    const w = await digestWarmed(ctx);
    const wrong = await digestOf(treeBundle(noise(1536 * 1024).reverse()));
    const run = await w.sb.fetch(w.store.url(), w.b.hash, ['--bundle-tree-digest', wrong]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(DIGEST_MISMATCH);
    expect(run.stdout).toContain(EXPECTED_OUTPUT());
  });

  test('a tree past the agent’s entry cap is caught before it is hashed', async (ctx) => {
    const w = await digestWarmed(ctx);
    for (let i = 0; i < 5; i++) await fs.writeFile(path.join(w.files, `extra-${i}`), 'x');
    const run = await w.sb.fetch(w.store.url(), w.b.hash, w.extra, { SWARM_MAX_ENTRIES: '8' });
    ctx.expect(run.stderr).toMatch(/discarded the cached tree of [0-9a-f]{12}: it holds more than 8 entries/);
  });

  test('a malformed digest in the metadata is refused (64) before anything is fetched', async (ctx) => {
    const { expect } = ctx;
    const sb = await sandbox();
    ctx.onTestFinished(() => sb.remove());
    const b = treeBundle();
    const store = await started(ctx, serveBundle(b.bytes));
    const run = await sb.fetch(store.url(), b.hash, ['--bundle-tree-digest', 'XYZ']);
    expect(run.code).toBe(64);
    expect(run.stderr).toMatch(/bundle\.treeDigest/);
    expect(store.requests).toHaveLength(0);
  });
});
