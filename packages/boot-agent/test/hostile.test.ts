/**
 * The boot agent against hostile input: a store that lies, stalls or redirects, bundles
 * crafted to escape the workflow directory or exhaust the disk, and bad metadata. Each
 * case runs the real agent process in a sandbox and checks three things: the exit code,
 * a one-line message that names the problem (and the offending entry), and what was left
 * on disk — nothing outside the cache and workflow directories, no temporary files, no
 * cache file under a hash its bytes do not have, and a previous workflow tree untouched
 * when the new one is refused.
 *
 * Fixtures are generated here (see support/fixtures.ts); servers listen on loopback only.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, type ExpectStatic, type TestContext, test } from 'vitest';
import type { AgentRun } from './support/run-agent.js';
import {
  type Blob,
  bigBundle,
  blob,
  bundle,
  gzip,
  gzipBombFile,
  lastLine,
  leftoverProblems,
  manifest,
  manyEntriesBundle,
  noise,
  plantPreviousWorkflow,
  type Sandbox,
  sandbox,
  sendBundle,
  serve,
  serveBundle,
  sha256,
  sha256File,
  sleep,
  snapshot,
  type TarEntry,
  tarBytes,
  type TestServer,
} from './support/fixtures.js';

const EXIT = { USAGE: 64, HASH_MISMATCH: 65, UNSAFE_BUNDLE: 66, FETCH_FAILED: 69 } as const;
const RAN = 'WORKFLOW-RAN';

/** A sandbox (removed when the test ends), optionally holding a previous good workflow tree. */
async function arena(ctx: TestContext, opts: { previous?: boolean } = {}) {
  const sb = await sandbox();
  ctx.onTestFinished(() => sb.remove());
  if (opts.previous) await plantPreviousWorkflow(sb);
  const before = await snapshot(sb.workflowDir);
  return { sb, before };
}

/** A server closed when the test ends. */
async function started(ctx: TestContext, server: Promise<TestServer>): Promise<TestServer> {
  const s = await server;
  ctx.onTestFinished(() => s.close());
  return s;
}

/** The run failed with `code` and `message`, before the workflow could start. */
function expectRefused(expect: ExpectStatic, run: AgentRun, code: number, message: RegExp | string) {
  const pattern = typeof message === 'string' ? new RegExp(escapeRegExp(message)) : message;
  expect({ code: run.code, message: lastLine(run.stderr) }).toEqual({ code, message: expect.stringMatching(pattern) });
  expect(run.stdout).not.toContain(RAN);
}

/** Nothing outside the cache and workflow directories, no temporary files, only `cached` in the cache. */
async function expectClean(expect: ExpectStatic, sb: Sandbox, cached: string[], alsoAllowed: string[] = []) {
  expect(await leftoverProblems(sb, { cached, alsoAllowed })).toEqual([]);
}

const exists = (p: string) =>
  fs.lstat(p).then(
    () => true,
    () => false,
  );
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A small valid bundle: its manifest exits with `code`. */
const goodBundle = (code = 0) => bundle([manifest(code), { path: 'app/main.js', body: 'console.log("hello");\n' }]);

describe.concurrent('boot agent against hostile input', () => {
  // Built before the concurrent tests start: ~100 MB of tar headers take a few seconds of this
  // thread, which would otherwise stall the other tests' servers.
  let manyEntries: Blob;
  beforeAll(() => {
    manyEntries = manyEntriesBundle(200_000);
  });

  describe('the bundle', () => {
    /** Serves `entries` as a gzip'd tar and runs the agent on it, with a previous workflow in place. */
    async function unpackHostile(ctx: TestContext, entries: TarEntry[] | Blob, timeoutMs?: number) {
      const { sb, before } = await arena(ctx, { previous: true });
      const b = Array.isArray(entries) ? bundle(entries) : entries;
      const store = await started(ctx, serveBundle(b.bytes));
      const run = await sb.fetch(store.url(), b.hash, [], {}, timeoutMs);
      return { sb, before, b, run };
    }

    /** Refused as unsafe with `message`; the previous tree untouched; the (verified) bundle may stay cached. */
    async function expectUnsafe(ctx: TestContext, r: Awaited<ReturnType<typeof unpackHostile>>, message: RegExp | string) {
      expectRefused(ctx.expect, r.run, EXIT.UNSAFE_BUNDLE, message);
      ctx.expect(await snapshot(r.sb.workflowDir)).toEqual(r.before);
      await expectClean(ctx.expect, r.sb, [r.b.hash]);
    }

    test('200,000 tiny entries exceed the default cap of 100,000 (66)', { timeout: 200_000 }, async (ctx) => {
      // Parsing 200,000 headers (the agent's checking pass writes nothing) takes a while on a
      // loaded 2-core machine, so this case gets a long leash.
      const r = await unpackHostile(ctx, manyEntries, 180_000);
      await expectUnsafe(ctx, r, 'unsafe_bundle: more than 100000 entries');
    });

    test('a gzip bomb (1 GiB of zeros in ~1 MiB) is refused without writing it out (66)', { timeout: 120_000 }, async (ctx) => {
      const { expect } = ctx;
      const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-bomb-'));
      ctx.onTestFinished(() => fs.rm(tmp, { recursive: true, force: true }));
      const bomb = await gzipBombFile(path.join(tmp, 'bomb.tar.gz'));
      expect(bomb.bytes.length).toBeLessThan(2 * 1024 * 1024);

      const { sb, before } = await arena(ctx, { previous: true });
      const store = await started(ctx, serveBundle(bomb.bytes));
      // Watch the disk while the agent runs: the largest total of bytes outside the cache.
      let peak = 0;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          peak = Math.max(peak, await bytesUnder(sb.dir, sb.cacheDir));
          await sleep(20);
        }
      })();
      const run = await sb.fetch(store.url(), bomb.hash);
      watching = false;
      await watcher;

      await expectUnsafe(ctx, { sb, before, b: bomb, run }, /max decompression ratio exceeded/);
      expect(peak).toBeLessThan(64 * 1024 * 1024);
    });

    test('an entry climbing out with "../" is refused (66) and nothing lands outside', async (ctx) => {
      const name = `swarm-escaped-${randomBytes(6).toString('hex')}`;
      const r = await unpackHostile(ctx, [manifest(), { path: 'ok.txt', body: 'fine' }, { path: `../../${name}`, body: 'escaped' }]);
      await expectUnsafe(ctx, r, `entry "../../${name}" climbs out with ".."`);
      ctx.expect(await exists(path.join(os.tmpdir(), name))).toBe(false);
      ctx.expect(await exists(path.join(r.sb.dir, name))).toBe(false);
    });

    test('an entry with an absolute path is refused (66) and nothing is written there', async (ctx) => {
      const target = path.join(os.tmpdir(), `swarm-absolute-${randomBytes(6).toString('hex')}`);
      const r = await unpackHostile(ctx, [manifest(), { path: target, body: 'planted' }]);
      await expectUnsafe(ctx, r, `entry "${target}" has an absolute path`);
      ctx.expect(await exists(target)).toBe(false);
    });

    test('a symlink entry is refused (66)', async (ctx) => {
      const r = await unpackHostile(ctx, [manifest(), { path: 'link', type: 'SymbolicLink', linkpath: 'swarm.json' }]);
      await expectUnsafe(ctx, r, 'entry "link" is a SymbolicLink; bundles may hold only regular files and directories');
    });

    test('a symlink followed by a file written through it is refused (66) and the target stays empty', async (ctx) => {
      const { sb, before } = await arena(ctx, { previous: true });
      const outside = path.join(sb.dir, 'outside');
      await fs.mkdir(outside);
      const b = bundle([
        manifest(),
        { path: 'escape', type: 'SymbolicLink', linkpath: outside },
        { path: 'escape/pwned.txt', body: 'pwned' },
      ]);
      const store = await started(ctx, serveBundle(b.bytes));

      const run = await sb.fetch(store.url(), b.hash);

      expectRefused(ctx.expect, run, EXIT.UNSAFE_BUNDLE, 'entry "escape" is a SymbolicLink');
      ctx.expect(await fs.readdir(outside)).toEqual([]);
      ctx.expect(await snapshot(sb.workflowDir)).toEqual(before);
      await expectClean(ctx.expect, sb, [b.hash], ['outside/']);
    });

    test('a symlink pointing outside the bundle is refused (66)', async (ctx) => {
      const r = await unpackHostile(ctx, [
        manifest(),
        { path: 'config/passwd', type: 'SymbolicLink', linkpath: '../../../../../../../../etc/passwd' },
      ]);
      await expectUnsafe(ctx, r, 'entry "config/passwd" is a SymbolicLink');
    });

    test('a hard link to /etc/passwd is refused (66) and /etc/passwd gains no link', async (ctx) => {
      const before = await fs.stat('/etc/passwd');
      const r = await unpackHostile(ctx, [manifest(), { path: 'passwd', type: 'Link', linkpath: '/etc/passwd' }]);
      await expectUnsafe(ctx, r, 'entry "passwd" is a Link; bundles may hold only regular files and directories');
      const after = await fs.stat('/etc/passwd');
      ctx.expect({ nlink: after.nlink, mtime: after.mtimeMs }).toEqual({ nlink: before.nlink, mtime: before.mtimeMs });
    });

    test('a character device node is refused (66)', async (ctx) => {
      const r = await unpackHostile(ctx, [manifest(), { path: 'dev/mem', type: 'CharacterDevice', devmaj: 1, devmin: 1, mode: 0o666 }]);
      await expectUnsafe(ctx, r, 'entry "dev/mem" is a CharacterDevice');
    });

    test('a FIFO is refused (66)', async (ctx) => {
      const r = await unpackHostile(ctx, [manifest(), { path: 'queue', type: 'FIFO', mode: 0o644 }]);
      await expectUnsafe(ctx, r, 'entry "queue" is a FIFO');
    });

    test('2,000-deep nesting is refused past 64 levels (66)', async (ctx) => {
      const entries: TarEntry[] = [manifest()];
      for (let depth = 1; depth <= 2000; depth++) entries.push({ path: 'd/'.repeat(depth), type: 'Directory' });
      entries.push({ path: `${'d/'.repeat(2000)}deep.txt`, body: 'bottom' });
      const r = await unpackHostile(ctx, entries);
      await expectUnsafe(ctx, r, /entry "(d\/){64}d.*" is nested deeper than 64 levels$/);
    });

    test('a body that is not gzip (a plain tar) is refused (66)', async (ctx) => {
      const r = await unpackHostile(ctx, blob(tarBytes([manifest()])));
      await expectUnsafe(ctx, r, 'unsafe_bundle: the bundle is not gzip-compressed');
    });

    test('a gzip of something that is not a tar is refused (66)', async (ctx) => {
      const r = await unpackHostile(ctx, blob(gzip(Buffer.from('this is a README, not a tar archive\n'.repeat(2000)))));
      await expectUnsafe(ctx, r, 'unsafe_bundle: not a valid bundle: TAR_ENTRY_INVALID: checksum failure');
    });

    test("a tar gzip'd twice is refused (66), not gunzip'd again", async (ctx) => {
      const r = await unpackHostile(ctx, blob(gzip(gzip(tarBytes([manifest()])))));
      await expectUnsafe(ctx, r, 'unsafe_bundle: the archive inside the gzip is compressed again; a bundle is one gzip over a tar');
    });

    test('a gzip that is cut off inside the tar is refused (66)', async (ctx) => {
      const whole = bigBundle().bytes;
      const r = await unpackHostile(ctx, blob(whole.subarray(0, whole.length >> 1)));
      await expectUnsafe(ctx, r, 'unsafe_bundle: not a valid bundle: zlib: unexpected end of file');
    });

    test('a duplicate entry is refused (66), not merged', async (ctx) => {
      const r = await unpackHostile(ctx, [manifest(), { path: 'a.txt', body: 'one' }, { path: 'a.txt', body: 'two' }]);
      await expectUnsafe(ctx, r, 'entry "a.txt" appears twice');
    });

    test('a duplicate large entry (streamed to disk, not buffered) is refused too (66)', async (ctx) => {
      const big = noise(2 * 1024 * 1024);
      const r = await unpackHostile(ctx, [manifest(), { path: 'data/model.bin', body: big }, { path: './data/model.bin', body: big }]);
      await expectUnsafe(ctx, r, 'entry "./data/model.bin" appears twice');
    });

    test('setuid, setgid and sticky bits are dropped: a 0o4755 file is unpacked 0o755 and runs', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = bundle([
        manifest(0),
        { path: 'bin/', type: 'Directory', mode: 0o755 },
        { path: 'bin/tool', mode: 0o4755, body: '#!/bin/sh\necho tool\n' },
        { path: 'bin/group-tool', mode: 0o2755, body: '#!/bin/sh\necho group\n' },
        { path: 'shared/', type: 'Directory', mode: 0o1777 },
        { path: 'shared/notes.txt', mode: 0o4644, body: 'notes' },
      ]);
      const store = await started(ctx, serveBundle(b.bytes));

      const run = await sb.fetch(store.url(), b.hash);

      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain(RAN);
      const mode = async (rel: string) => ((await fs.stat(path.join(sb.workflowDir, rel))).mode & 0o7777).toString(8);
      expect({
        tool: await mode('bin/tool'),
        groupTool: await mode('bin/group-tool'),
        shared: await mode('shared'),
        notes: await mode('shared/notes.txt'),
      }).toEqual({ tool: '755', groupTool: '755', shared: '755', notes: '644' });
      await expectClean(expect, sb, [b.hash]);
    });

    test("a valid bundle runs its swarm.json entrypoint, whose exit code (7) becomes the agent's", async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx, { previous: true });
      const b = goodBundle(7);
      const store = await started(ctx, serveBundle(b.bytes));

      const run = await sb.fetch(store.url(), b.hash);

      expect(run.code, run.stderr).toBe(7);
      expect(run.stdout).toContain(RAN);
      // The new tree replaced the previous one whole.
      expect(Object.keys(await snapshot(sb.workflowDir)).sort()).toEqual(['app/', 'app/main.js', 'swarm.json']);
      await expectClean(expect, sb, [b.hash]);
    });
  });

  describe('the store', () => {
    test('a download with one flipped byte is fetched again, then refused (65); the previous workflow stays', async (ctx) => {
      const { expect } = ctx;
      const { sb, before } = await arena(ctx, { previous: true });
      const good = goodBundle();
      const bad = Buffer.from(good.bytes);
      bad[bad.length >> 1]! ^= 0x01;
      const store = await started(ctx, serveBundle(bad));

      const run = await sb.fetch(store.url(), good.hash);

      expectRefused(expect, run, EXIT.HASH_MISMATCH, `the download's sha256 is ${sha256(bad)}, expected ${good.hash}`);
      expect(store.requests).toHaveLength(2); // one fresh download after the first mismatch, no more
      expect(await snapshot(sb.workflowDir)).toEqual(before);
      await expectClean(expect, sb, []);
    });

    test('a download damaged once, right the second time, is unpacked from the verified file and runs', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx, { previous: true });
      const good = goodBundle(7);
      const bad = Buffer.from(good.bytes);
      bad[bad.length >> 1]! ^= 0x01;
      let served = 0;
      // The first answer's bytes were walked while they arrived: the second download starts
      // over, so the agent empties its staging directory and unpacks the verified file instead.
      const store = await started(
        ctx,
        serve((req, res) => sendBundle(req, res, served++ === 0 ? bad : good.bytes)),
      );

      const run = await sb.fetch(store.url(), good.hash);

      expect(run.code, run.stderr).toBe(7);
      expect(run.stdout).toContain(RAN);
      expect(store.requests).toHaveLength(2);
      expect(Object.keys(await snapshot(sb.workflowDir)).sort()).toEqual(['app/', 'app/main.js', 'swarm.json']);
      await expectClean(expect, sb, [good.hash]);
    });

    test('a body cut short of its Content-Length is retried, then fails (69); the previous workflow stays', async (ctx) => {
      const { expect } = ctx;
      const { sb, before } = await arena(ctx, { previous: true });
      const b = bigBundle();
      const store = await started(
        ctx,
        serve(async (_req, res) => {
          res.writeHead(200, { 'content-length': b.bytes.length });
          res.write(b.bytes.subarray(0, 64 * 1024));
          await sleep(100);
          res.socket?.end(); // FIN with bytes still owed
        }),
      );

      const run = await sb.fetch(store.url(), b.hash, [], { SWARM_FETCH_ATTEMPTS: '2' });

      // Node's http client: the response was aborted (ECONNRESET).
      expectRefused(expect, run, EXIT.FETCH_FAILED, /^swarm-boot-agent: fetch_failed: download interrupted: ECONNRESET/);
      expect(run.stderr).toContain('download attempt 1 failed');
      expect(store.requests).toHaveLength(2);
      expect(await snapshot(sb.workflowDir)).toEqual(before);
      await expectClean(expect, sb, []);
    });

    test('a body cut short is resumed with a Range request and the run succeeds', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = bigBundle();
      const cut = 100 * 1024;
      const statuses: number[] = [];
      const store = await started(
        ctx,
        serve(async (req, res, n) => {
          if (n === 1) {
            res.writeHead(200, { 'content-length': b.bytes.length });
            res.write(b.bytes.subarray(0, cut));
            await sleep(200); // let the agent take in what was sent
            res.socket?.end();
            statuses.push(200);
            return;
          }
          sendBundle(req, res, b.bytes);
          statuses.push(res.statusCode);
        }),
      );

      const run = await sb.fetch(store.url(), b.hash);

      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain(RAN);
      expect(store.requests).toHaveLength(2);
      const range = /^bytes=(\d+)-$/.exec(store.requests[1]!.headers.range ?? '');
      expect(range, `second request's Range: ${store.requests[1]!.headers.range}`).not.toBeNull();
      const from = Number(range![1]);
      expect(from).toBeGreaterThan(0);
      expect(from).toBeLessThanOrEqual(cut);
      expect(statuses).toEqual([200, 206]);
      expect(await sha256File(path.join(sb.workflowDir, 'data/noise.bin'))).toBe(sha256(noise()));
      await expectClean(expect, sb, [b.hash]);
    });

    test('a connection reset in the middle of the body fails the download (69) after the allowed attempts', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = bigBundle();
      const store = await started(
        ctx,
        serve(async (_req, res) => {
          res.writeHead(200, { 'content-length': b.bytes.length });
          res.write(b.bytes.subarray(0, 64 * 1024));
          await sleep(100);
          res.socket?.resetAndDestroy(); // TCP RST
        }),
      );

      const run = await sb.fetch(store.url(), b.hash, [], { SWARM_FETCH_ATTEMPTS: '2' });

      expectRefused(expect, run, EXIT.FETCH_FAILED, /^swarm-boot-agent: fetch_failed: download interrupted: (ECONNRESET|UND_ERR_SOCKET)/);
      expect(store.requests).toHaveLength(2);
      await expectClean(expect, sb, []);
    });

    test('a store sending more bytes than BUNDLE_SIZE is cut off (65)', async (ctx) => {
      const { expect } = ctx;
      const { sb, before } = await arena(ctx, { previous: true });
      const b = goodBundle();
      let sent = 0;
      const store = await started(
        ctx,
        serve(async (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/gzip' }); // chunked: no length to check up front
          res.write(b.bytes);
          sent = b.bytes.length;
          const junk = Buffer.alloc(64 * 1024, 0x5a);
          for (let i = 0; i < 64 && !res.destroyed; i++) {
            // Counted as written, before waiting for the drain: the agent may cut off and the
            // test check `sent` while this loop still waits.
            const flowing = res.write(junk);
            sent += junk.length;
            if (!flowing) await new Promise((r) => setTimeout(r, 20));
          }
          res.end();
        }),
      );

      const run = await sb.fetch(store.url(), b.hash, ['--bundle-size', String(b.bytes.length)]);

      expectRefused(expect, run, EXIT.HASH_MISMATCH, `the store sent more than the expected ${b.bytes.length} bytes; cut off`);
      expect(sent).toBeGreaterThan(b.bytes.length);
      expect(await snapshot(sb.workflowDir)).toEqual(before);
      await expectClean(expect, sb, []);
    });

    test('a store announcing more bytes than BUNDLE_SIZE is refused before the body (65)', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = goodBundle();
      const longer = Buffer.concat([b.bytes, Buffer.alloc(4096)]);
      const store = await started(ctx, serveBundle(longer));

      const run = await sb.fetch(store.url(), b.hash, ['--bundle-size', String(b.bytes.length)]);

      expectRefused(expect, run, EXIT.HASH_MISMATCH, `the store offers ${longer.length} bytes, more than the expected ${b.bytes.length}`);
      await expectClean(expect, sb, []);
    });

    test('a store streaming past SWARM_MAX_BUNDLE_BYTES with no size given is cut off (66)', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const store = await started(
        ctx,
        serve(async (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/gzip' });
          const chunk = randomBytes(64 * 1024);
          for (let i = 0; i < 128 && !res.destroyed; i++) {
            if (!res.write(chunk)) await new Promise((r) => setTimeout(r, 20));
          }
          res.end();
        }),
      );

      const run = await sb.fetch(store.url(), 'a'.repeat(64), [], { SWARM_MAX_BUNDLE_BYTES: String(1024 * 1024) });

      expectRefused(expect, run, EXIT.UNSAFE_BUNDLE, 'the store sent more than the expected 1048576 bytes; cut off');
      await expectClean(expect, sb, []);
    });

    test('a store trickling 1 byte/s is abandoned within 10 s (69)', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = goodBundle();
      let closedAt = 0;
      const store = await started(
        ctx,
        serve(async (req, res) => {
          req.socket.once('close', () => (closedAt = Date.now()));
          res.writeHead(200, { 'content-length': b.bytes.length });
          for (let i = 0; i < 30 && !res.destroyed && !res.socket?.destroyed; i++) {
            res.write(b.bytes.subarray(i, i + 1));
            await sleep(1000);
          }
          res.end();
        }),
      );

      const run = await sb.fetch(store.url(), b.hash, [], { SWARM_FETCH_STALL_SECONDS: '2', SWARM_FETCH_ATTEMPTS: '1' });
      const exitedAt = Date.now();

      expectRefused(expect, run, EXIT.FETCH_FAILED, 'the store is sending slower than 1024 bytes/s; abandoned');
      expect(store.requests).toHaveLength(1);
      // Timed from the request's arrival, so the agent's start-up on a busy machine does not count.
      const askedAt = store.requests[0]!.at;
      expect(exitedAt - askedAt).toBeLessThan(10_000);
      expect(closedAt - askedAt).toBeLessThan(10_000);
      await expectClean(expect, sb, []);
    });

    for (const status of [404, 403]) {
      test(`a ${status} from the store is not retried (69)`, async (ctx) => {
        const { expect } = ctx;
        const { sb, before } = await arena(ctx, { previous: true });
        const store = await started(
          ctx,
          serve((_req, res) => {
            res.writeHead(status, { 'content-type': 'application/xml' });
            res.end('<Error><Code>NoSuchKey</Code></Error>');
          }),
        );

        const run = await sb.fetch(store.url(), 'b'.repeat(64));

        expectRefused(expect, run, EXIT.FETCH_FAILED, `the store answered HTTP ${status}`);
        expect(store.requests).toHaveLength(1);
        expect(await snapshot(sb.workflowDir)).toEqual(before);
        await expectClean(expect, sb, []);
      });
    }

    test('a 500 from the store is retried up to SWARM_FETCH_ATTEMPTS, then fails (69)', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const store = await started(
        ctx,
        serve((_req, res) => {
          res.writeHead(500);
          res.end('internal error');
        }),
      );

      const run = await sb.fetch(store.url(), 'c'.repeat(64), [], { SWARM_FETCH_ATTEMPTS: '2' });

      expectRefused(expect, run, EXIT.FETCH_FAILED, 'the store answered HTTP 500');
      expect(run.stderr).toContain('download attempt 1 failed (the store answered HTTP 500); retrying');
      expect(store.requests).toHaveLength(2);
      await expectClean(expect, sb, []);
    });

    test('a redirect to another host is refused without contacting it (69)', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = goodBundle();
      // 127.0.0.2 is loopback too on Linux, but a different host to the agent.
      const elsewhere = await started(ctx, serveBundle(b.bytes, '127.0.0.2'));
      const store = await started(
        ctx,
        serve((_req, res) => {
          res.writeHead(302, { location: elsewhere.url() });
          res.end();
        }),
      );

      const run = await sb.fetch(store.url(), b.hash);

      expectRefused(expect, run, EXIT.FETCH_FAILED, `the store redirected to another host (127.0.0.2:${elsewhere.port}); refused`);
      expect(store.requests).toHaveLength(1);
      expect(elsewhere.requests).toHaveLength(0);
      await expectClean(expect, sb, []);
    });

    test('(control) a redirect within the same origin is followed', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = goodBundle();
      const store = await started(
        ctx,
        serve((req, res) => {
          if (req.url === '/moved.tar.gz') return sendBundle(req, res, b.bytes);
          res.writeHead(307, { location: '/moved.tar.gz' });
          res.end();
        }),
      );

      const run = await sb.fetch(store.url(), b.hash);

      expect(run.code, run.stderr).toBe(0);
      expect(store.requests.map((r) => r.url)).toEqual(['/bundle.tar.gz', '/moved.tar.gz']);
      await expectClean(expect, sb, [b.hash]);
    });

    test('a corrupt file planted in the cache under the right name is discarded, refetched and the run succeeds', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = goodBundle();
      const planted = Buffer.from(b.bytes);
      planted[planted.length - 20]! ^= 0xff; // same size, one byte off
      await fs.mkdir(sb.cacheDir, { recursive: true });
      await fs.writeFile(path.join(sb.cacheDir, `${b.hash}.tar.gz`), planted);
      const store = await started(ctx, serveBundle(b.bytes));

      const run = await sb.fetch(store.url(), b.hash);

      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain('discarded a corrupt cached bundle');
      expect(run.stdout).toContain(RAN);
      expect(store.requests).toHaveLength(1);
      await expectClean(expect, sb, [b.hash]);

      // The refetched file is now a good cache entry: the next boot does not download.
      const again = await sb.fetch(store.url(), b.hash);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toContain(`cache hit ${b.hash.slice(0, 12)}`);
      expect(store.requests).toHaveLength(1);
      await expectClean(expect, sb, [b.hash]);
    });

    test('two agents racing on one cache directory both succeed and leave exactly one cached file and tree', async (ctx) => {
      const { expect } = ctx;
      const { sb } = await arena(ctx);
      const b = bigBundle();
      // Hold each response until both agents have asked (at most 20 s), so the downloads overlap.
      let release!: () => void;
      const bothAsked = new Promise<void>((r) => (release = r));
      const store = await started(
        ctx,
        serve(async (req, res, n) => {
          if (n >= 2) release();
          await Promise.race([bothAsked, sleep(20_000)]);
          sendBundle(req, res, b.bytes);
        }),
      );
      const otherWorkflowDir = path.join(sb.dir, 'workflow-b');

      const [one, two] = await Promise.all([
        sb.fetch(store.url(), b.hash),
        sb.fetch(store.url(), b.hash, [], { SWARM_WORKFLOW_DIR: otherWorkflowDir }),
      ]);

      expect([one.code, two.code], one.stderr + two.stderr).toEqual([0, 0]);
      expect(store.requests).toHaveLength(2);
      expect((await fs.readdir(sb.cacheDir)).sort()).toEqual([`${b.hash}.tar.gz`, `${b.hash}.tree`]);
      expect(await snapshot(otherWorkflowDir)).toEqual(await snapshot(sb.workflowDir));
      await expectClean(expect, sb, [b.hash], ['workflow-b/']);
    });
  });

  describe('the metadata', () => {
    const hash = 'd'.repeat(64);

    /** Refused with one line naming `field`; the store never asked; nothing written. */
    async function expectBadMetadata(
      ctx: TestContext,
      args: (url: string) => string[],
      env: Record<string, string>,
      message: RegExp | string,
    ) {
      const { sb } = await arena(ctx);
      const store = await started(ctx, serveBundle(goodBundle().bytes));
      const run = await sb.run(args(store.url()), env);
      expectRefused(ctx.expect, run, EXIT.USAGE, message);
      ctx.expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
      ctx.expect(store.requests).toHaveLength(0);
      ctx.expect(await sb.tree()).toEqual(['metadata.json']);
    }

    test('a malformed hash is refused (64), naming bundle.hash', async (ctx) => {
      await expectBadMetadata(
        ctx,
        (url) => ['--bundle-url', url, '--bundle-hash', 'D'.repeat(63)],
        {},
        'bad_metadata: metadata bundle.hash: must be a sha256 digest',
      );
    });

    test('a file:// URL is refused (64), naming bundle.url', async (ctx) => {
      await expectBadMetadata(
        ctx,
        () => ['--bundle-url', 'file:///etc/passwd', '--bundle-hash', hash],
        {},
        'bad_metadata: metadata bundle.url: must be an http:// or https:// URL',
      );
    });

    test('an ftp:// URL is refused (64), naming bundle.url', async (ctx) => {
      await expectBadMetadata(
        ctx,
        () => ['--bundle-url', 'ftp://127.0.0.1/bundle.tar.gz', '--bundle-hash', hash],
        {},
        'bad_metadata: metadata bundle.url: must be an http:// or https:// URL',
      );
    });

    test('an empty runtime command (SWARM_RUNTIME_CMD=[]) is refused (64), naming runtime.command', async (ctx) => {
      await expectBadMetadata(
        ctx,
        (url) => ['--bundle-url', url, '--bundle-hash', hash],
        { SWARM_RUNTIME_CMD: '[]' },
        'bad_metadata: metadata runtime.command: must not be empty',
      );
    });

    test('no metadata at all is refused (64), naming bundle', async (ctx) => {
      await expectBadMetadata(ctx, () => [], {}, /bad_metadata: metadata bundle: needs bundle\.url and bundle\.hash/);
    });
  });
});

/** Total size of the regular files under `dir`, except under `skip`. */
async function bytesUnder(dir: string, skip: string): Promise<number> {
  let total = 0;
  for (const d of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, d.name);
    if (p === skip) continue;
    if (d.isDirectory()) total += await bytesUnder(p, skip);
    else if (d.isFile())
      total += await fs.stat(p).then(
        (s) => s.size,
        () => 0,
      );
  }
  return total;
}
