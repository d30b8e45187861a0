/**
 * The boot agent end to end against the real S3 server: a bundle pushed to the registry,
 * fetched through a presigned URL, verified, cached, unpacked and run, with events to a
 * recorder; a second run is a cache hit that sends no request to the store. Metadata
 * comes from MMDS (V2 sessions), a file, or a workflow reference resolved through the API.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { listBundleEntries, packDirectory } from '@swarm/sdk';
import { startMetadataService } from '@swarm/sdk/orchestrator';
import { type TestRegistry, startTestRegistry } from '../../../test/support/registry.js';
import { type AgentSandbox, agentSandbox } from './support/run-agent.js';
import { eventRecorder } from './support/events.js';

/** The CPU features boot.sh names in a snapshot id, from this machine's /proc/cpuinfo (empty off x86-64). */
function v8CpuFeatures(): string {
  const line = readFileSync('/proc/cpuinfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('flags'));
  const have = new Set(
    line
      ?.slice(line.indexOf(':') + 1)
      .trim()
      .split(/\s+/),
  );
  return ['pni', 'ssse3', 'sse4_1', 'sse4_2', 'lahf_lm', 'avx', 'avx2', 'fma', 'bmi1', 'bmi2', 'abm', 'popcnt', 'f16c']
    .filter((f) => have.has(f))
    .join(',');
}

const SECRET = 'correct horse battery staple';
const secretDigest = createHash('sha256').update(SECRET).digest('hex');

describe('boot agent with the S3 store', () => {
  let reg: TestRegistry;
  let sandbox: AgentSandbox;
  let recorder: Awaited<ReturnType<typeof eventRecorder>>;
  let bundle: { url: string; hash: string; size: number };
  const executionId = '6f1c2b9e-3d4a-4e5f-8a7b-1c2d3e4f5a6b';

  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 's3' });
    sandbox = await agentSandbox();
    recorder = await eventRecorder();
    const src = path.join(sandbox.dir, 'src');
    await fs.mkdir(path.join(src, 'lib'), { recursive: true });
    await fs.writeFile(
      path.join(src, 'index.js'),
      `const { createHash } = require('node:crypto');
const fs = require('node:fs');
console.log('secret digest ' + createHash('sha256').update(process.env.API_KEY ?? '').digest('hex'));
console.log('agent token visible: ' + (process.env.SWARM_AGENT_TOKEN !== undefined));
fs.writeFileSync('out.txt', require('./lib/msg.js'));
`,
    );
    await fs.writeFile(path.join(src, 'lib/msg.js'), 'module.exports = "written by the workflow";\n');
    await fs.writeFile(path.join(src, 'swarm.json'), '{"entrypoint":["node","index.js"]}\n');
    const file = path.join(sandbox.dir, 'bundle.tar.gz');
    await fs.writeFile(file, packDirectory(src, await listBundleEntries(src)));
    await fs.rm(src, { recursive: true });
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'hello' }));
    await c.uploadBundle(file, { workflow: 'acme/hello', activate: true });
    await fs.rm(file);
    const active = await c.resolveActive('acme/hello');
    bundle = { url: active.bundleUrl, hash: active.bundleHash, size: active.size };
  });
  afterAll(async () => {
    await reg?.close();
    await sandbox?.remove();
    await recorder?.close();
  });

  const storeRequests = async () => {
    const log = inject('s3').logFile;
    return log
      ? (await fs.readFile(log, 'utf8')).split('\n').filter((l) => l.includes(`/${reg.bucket}/`) && l.includes(bundle.hash)).length
      : null;
  };

  it('fetches from a presigned S3 URL, verifies, caches, unpacks and runs, reporting every step', async () => {
    await fs.writeFile(
      path.join(sandbox.dir, 'metadata.json'),
      JSON.stringify({ apiUrl: recorder.url, execution: { id: executionId, agentToken: 'agent-token-1' }, secrets: { API_KEY: SECRET } }),
    );
    const before = await storeRequests();
    const r = await sandbox.run(['--bundle-url', bundle.url, '--bundle-hash', bundle.hash, '--bundle-size', String(bundle.size)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`secret digest ${secretDigest}`);
    expect(r.stdout).toContain('agent token visible: false');
    expect(await fs.readFile(path.join(sandbox.workflowDir, 'out.txt'), 'utf8')).toBe('written by the workflow');
    if (before !== null) expect(await storeRequests()).toBeGreaterThan(before);

    const events = recorder.events.filter((e) => e.executionId === executionId);
    expect(events.map((e) => e.type)).toEqual([
      'metadata_loaded',
      'cache_miss',
      'fetched',
      'verified',
      'unpacked',
      'runtime_started',
      'output',
      'runtime_exited',
    ]);
    expect(events.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(events.find((e) => e.type === 'fetched')!.data).toMatchObject({ bytes: bundle.size, attempts: 1 });
    expect(events.find((e) => e.type === 'unpacked')!.data).toMatchObject({ files: 3 });
    expect(events.at(-1)!.data).toEqual({ code: 0 });
    expect(JSON.stringify(recorder.events)).not.toContain(SECRET);
    expect(r.stderr).not.toContain(SECRET);
    expect((await fs.readdir(sandbox.cacheDir)).sort()).toEqual([`${bundle.hash}.tar.gz`, `${bundle.hash}.tree`]);
  });

  it('runs a second time from the cache without a request to the store', async () => {
    const before = await storeRequests();
    recorder.events.length = 0;
    const r = await sandbox.run(['--bundle-url', bundle.url, '--bundle-hash', bundle.hash]);
    expect(r.code, r.stderr).toBe(0);
    expect(recorder.events.map((e) => e.type)).toEqual([
      'metadata_loaded',
      'cache_hit',
      'unpacked',
      'runtime_started',
      'output',
      'runtime_exited',
    ]);
    expect(recorder.events.find((e) => e.type === 'cache_hit')!.data).toMatchObject({ from: 'tree' });
    if (before !== null) expect(await storeRequests()).toBe(before);
  });

  it('reads its metadata from a Firecracker MMDS V2 service', async () => {
    const mmds = await startMetadataService({
      bundle,
      runtime: { command: ['node', '-e', 'console.log("from mmds", process.env.API_KEY === process.argv[1] ? "ok" : "bad")', SECRET] },
      secrets: { API_KEY: SECRET },
    });
    try {
      const noToken = await fetch(`${mmds.url}/`, { headers: { accept: 'application/json' } });
      expect(noToken.status).toBe(401);
      await fs.writeFile(path.join(sandbox.dir, 'metadata.json'), '{}');
      // Through a TCP relay that counts connections: the session token and the document
      // come over one connection (each new one costs a process on the host behind QEMU's forward).
      const net = await import('node:net');
      let connections = 0;
      const relay = net.createServer((client) => {
        connections++;
        const upstream = net.connect(mmds.port, '127.0.0.1');
        client.pipe(upstream).pipe(client);
        const done = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('close', done);
        client.on('error', done);
        upstream.on('error', done);
        upstream.on('close', done);
      });
      await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
      try {
        const r = await sandbox.run([], { SWARM_MMDS_URL: `http://127.0.0.1:${(relay.address() as AddressInfo).port}` });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toContain('from mmds ok');
        expect(connections).toBe(1);
      } finally {
        await new Promise((resolve) => relay.close(resolve));
      }
    } finally {
      await mmds.close();
    }
  });

  /**
   * A stand-in metadata service: `put` answers the session-token PUT, `get` the document GET,
   * with that status; 'silent' never answers (the request hangs until the agent gives up).
   */
  const brokenMmds = async (put: number | 'silent', get: number | 'silent') => {
    const http = await import('node:http');
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.method ?? '');
      const status = req.method === 'PUT' ? put : get;
      if (status === 'silent') return;
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'a-session-token' : 'broken');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      /** The methods of the requests it got, in order. */
      seen,
      close: () => {
        server.closeAllConnections();
        return new Promise((r) => server.close(r));
      },
    };
  };

  it('takes a metadata service that refuses a session token as no service: the other sources decide', async () => {
    const mmds = await brokenMmds(500, 200);
    try {
      await fs.writeFile(path.join(sandbox.dir, 'metadata.json'), '{}');
      const r = await sandbox.run(['--bundle-url', bundle.url, '--bundle-hash', bundle.hash], { SWARM_MMDS_URL: mmds.url });
      expect(r.code, r.stderr).toBe(0);
      // The workflow ran (its directory is replaced by each boot's unpack, so the file is this run's).
      expect(await fs.readFile(path.join(sandbox.workflowDir, 'out.txt'), 'utf8')).toBe('written by the workflow');
    } finally {
      await mmds.close();
    }
  });

  it('refuses to boot when the metadata service gives a token but fails the document (64)', async () => {
    const mmds = await brokenMmds(200, 503);
    try {
      await fs.writeFile(path.join(sandbox.dir, 'metadata.json'), '{}');
      const r = await sandbox.run(['--bundle-url', bundle.url, '--bundle-hash', bundle.hash], { SWARM_MMDS_URL: mmds.url });
      expect(r.code).toBe(64);
      expect(r.stderr).toContain(`bad_metadata: the metadata service at ${mmds.url} answered HTTP 503`);
    } finally {
      await mmds.close();
    }
  });

  it('takes a metadata service that never answers the token request as no service, after its timeout', async () => {
    const mmds = await brokenMmds('silent', 200);
    try {
      await fs.writeFile(path.join(sandbox.dir, 'metadata.json'), '{}');
      const r = await sandbox.run(['--bundle-url', bundle.url, '--bundle-hash', bundle.hash], { SWARM_MMDS_URL: mmds.url });
      expect(r.code, r.stderr).toBe(0);
      expect(mmds.seen).toEqual(['PUT']); // asked, waited, gave up: no document request without a token
      expect(await fs.readFile(path.join(sandbox.workflowDir, 'out.txt'), 'utf8')).toBe('written by the workflow');
    } finally {
      await mmds.close();
    }
  });

  it('refuses to boot when the metadata service gives a token and then never answers the document (64)', async () => {
    const mmds = await brokenMmds(200, 'silent');
    try {
      await fs.writeFile(path.join(sandbox.dir, 'metadata.json'), '{}');
      const r = await sandbox.run(['--bundle-url', bundle.url, '--bundle-hash', bundle.hash], { SWARM_MMDS_URL: mmds.url });
      expect(r.code).toBe(64);
      expect(r.stderr).toContain(`bad_metadata: the metadata service at ${mmds.url} failed: no answer within 3000 ms`);
      expect(mmds.seen).toEqual(['PUT', 'GET']);
    } finally {
      await mmds.close();
    }
  });

  it('resolves the active version itself when given only a workflow and a token', async () => {
    const r = await sandbox.run(['--workflow', 'acme/hello', '--api-url', reg.url], { SWARM_TOKEN: reg.adminToken });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`cache hit ${bundle.hash.slice(0, 12)}`);
  });

  it("fails (69) naming the registry's answer when the workflow to resolve does not exist", async () => {
    const r = await sandbox.run(['--workflow', 'acme/nope', '--api-url', reg.url], { SWARM_TOKEN: reg.adminToken });
    expect(r.code).toBe(69);
    expect(r.stderr).toMatch(/fetch_failed: cannot resolve acme\/nope: workflow "acme\/nope" not found/);
  });

  it('fails (69) when the token cannot resolve the workflow', async () => {
    const r = await sandbox.run(['--workflow', 'acme/hello', '--api-url', reg.url], { SWARM_TOKEN: 'not-a-token' });
    expect(r.code).toBe(69);
    expect(r.stderr).toMatch(/fetch_failed: cannot resolve acme\/hello: /);
  });

  it('keeps running when the registry cannot take its events', async () => {
    await fs.writeFile(
      path.join(sandbox.dir, 'metadata.json'),
      JSON.stringify({ apiUrl: 'http://127.0.0.1:1', execution: { id: executionId, agentToken: 'agent-token-1' } }),
    );
    const started = Date.now();
    const r = await sandbox.run(['--bundle-url', bundle.url, '--bundle-hash', bundle.hash, '--', 'node', '-e', 'process.exit(3)']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('cannot report events');
    expect(Date.now() - started).toBeLessThan(30_000); // generous: the point is "does not hang"
  });

  it('leaves nothing outside its cache and workflow directories', async () => {
    const outside = (await sandbox.tree()).filter((p) => !/^(cache|workflow)\//.test(p));
    expect(outside).toEqual(['metadata.json']);
    expect((await sandbox.tree()).filter((p) => /^cache\/[^/]*\/?$/.test(p))).toEqual([
      'cache/',
      `cache/${bundle.hash}.tar.gz`,
      `cache/${bundle.hash}.tree/`,
    ]);
  });
});

describe('a store that closes the connection after each response', () => {
  it('is read to the end, with backpressure, without crashing the agent', async () => {
    // undici 7 crashed here (uncatchable AssertionError, nodejs/undici#5360): HTTP/1.0-style
    // servers close after the body while a download written to disk is paused.
    const body = (await import('node:crypto')).randomBytes(16 * 1024 * 1024);
    const hash = createHash('sha256').update(body).digest('hex');
    const server = (await import('node:net')).createServer((sock) => {
      sock.once('data', () => {
        sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
        sock.end(body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const sb = await agentSandbox();
    try {
      await fs.writeFile(path.join(sb.dir, 'metadata.json'), '{}');
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/b.tgz`;
      const r = await sb.run(['--bundle-url', url, '--bundle-hash', hash, '--bundle-size', String(body.length)]);
      expect(r.stderr).toContain(`fetched and verified ${hash.slice(0, 12)}`);
      // Random bytes are no bundle: refused after the download, cleanly.
      expect(r.code, r.stderr).toBe(66);
    } finally {
      await sb.remove();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('the built agent', () => {
  /** boot.sh from `dir` (holding boot-agent.mjs and maybe its snapshot), run by dash with `args`. */
  const bootSh = (dir: string, args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      let stdout = '';
      let stderr = '';
      const child = spawn('dash', [path.resolve(import.meta.dirname, '../boot.sh'), ...args], {
        cwd: dir,
        env: { PATH: process.env.PATH, SWARM_BOOT_AGENT: path.join(dir, 'boot-agent.mjs'), SWARM_NODE: process.execPath, ...env },
      });
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
  const run = (cmd: string, args: string[], cwd: string) =>
    new Promise<void>((resolve, reject) =>
      spawn(cmd, args, { cwd, stdio: 'ignore' }).on('exit', (c) =>
        c === 0 ? resolve() : reject(new Error(`${cmd} ${args[0]} exited ${c}`)),
      ),
    );

  it('boot.sh prints its node flags and the snapshot id it wants (SWARM_BOOT_PRINT), and refuses another value', async () => {
    const dir = await fs.mkdtemp(path.join((await import('node:os')).tmpdir(), 'swarm-boot-print-'));
    try {
      const flags = await bootSh(dir, [], { SWARM_BOOT_PRINT: 'flags' });
      expect(flags).toMatchObject({ code: 0, stdout: '--max-semi-space-size=1 --no-lazy\n', stderr: '' });
      const id = await bootSh(dir, [], { SWARM_BOOT_PRINT: 'snapshot-id' });
      expect(id.code, id.stderr).toBe(0);
      expect(id.stdout).toBe(
        `size=${(await fs.stat(process.execPath)).size} flags=--max-semi-space-size=1 --no-lazy cpu=${v8CpuFeatures()}\n`,
      );
      const bad = await bootSh(dir, [], { SWARM_BOOT_PRINT: 'everything' });
      expect(bad).toMatchObject({ code: 64, stdout: '' });
      expect(bad.stderr).toContain('SWARM_BOOT_PRINT is flags or snapshot-id, not "everything"');
      // Printing goes no further: there is no agent in `dir`, which a boot would refuse (exit 70).
      // The same under busybox's sh, which the VM runs it with.
      const busybox = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
        let stdout = '';
        const child = spawn('busybox', ['sh', path.resolve(import.meta.dirname, '../boot.sh')], {
          cwd: dir,
          env: { PATH: process.env.PATH, SWARM_NODE: process.execPath, SWARM_BOOT_PRINT: 'snapshot-id' },
        });
        child.stdout.on('data', (c) => (stdout += c));
        child.on('error', () => resolve({ code: null, stdout: 'no busybox here' }));
        child.on('exit', (code) => resolve({ code, stdout }));
      });
      expect(busybox).toEqual({ code: 0, stdout: id.stdout });
      // A node that is not there: an id that could never match is refused, not printed.
      const noNode = await bootSh(dir, [], { SWARM_BOOT_PRINT: 'snapshot-id', SWARM_NODE: path.join(dir, 'no-node') });
      expect(noNode).toMatchObject({ code: 69, stdout: '' });
      expect(noNode.stderr).toContain('no node at');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('boot.sh runs the start-up snapshot built by this node with its flags, and falls back loudly to the plain file otherwise', async () => {
    const pkg = path.resolve(import.meta.dirname, '..');
    await run('pnpm', ['run', 'build'], pkg);
    const dir = await fs.mkdtemp(path.join((await import('node:os')).tmpdir(), 'swarm-snapshot-agent-'));
    try {
      // As scripts/vm/build-image.sh does: the snapshot's script written where the blob is built.
      await run('pnpm', ['run', 'build:snapshot-script', `--outfile=${path.join(dir, 'boot-agent.cjs')}`], pkg);
      await fs.copyFile(path.join(pkg, 'dist/boot-agent.mjs'), path.join(dir, 'boot-agent.mjs'));
      // As scripts/vm/build-image.sh does: boot.sh's flags, and the .id as boot.sh prints it.
      const flags = (await bootSh(dir, [], { SWARM_BOOT_PRINT: 'flags' })).stdout.trim();
      await run(
        process.execPath,
        [...flags.split(' '), '--snapshot-blob', 'boot-agent.blob', '--build-snapshot', path.join(dir, 'boot-agent.cjs')],
        dir,
      );
      const id = (await bootSh(dir, [], { SWARM_BOOT_PRINT: 'snapshot-id' })).stdout;
      await fs.writeFile(path.join(dir, 'boot-agent.blob.id'), id);

      const fromSnapshot = await bootSh(dir, ['--help']);
      expect(fromSnapshot.code, fromSnapshot.stderr).toBe(0);
      expect(fromSnapshot.stdout).toMatch(/Exit codes:[\s\S]*65 hash mismatch/);
      expect(fromSnapshot.stderr).toBe('');
      // The snapshot's agent really runs: it validates what it is given like the plain one.
      await fs.writeFile(path.join(dir, 'metadata.json'), JSON.stringify({ bundle: { url: 'http://127.0.0.1:1/b.tgz', hash: 'xyz' } }));
      const bad = await bootSh(dir, ['--mmds-url', 'off', '--metadata-file', path.join(dir, 'metadata.json')], { SWARM_LOG_TIMINGS: '1' });
      expect(bad.code).toBe(64);
      expect(bad.stderr).toMatch(
        /^swarm-boot-agent: started \d+ ms after node did[\s\S]*bad_metadata: metadata bundle\.hash: must be a sha256 digest/,
      );
      expect(bad.stderr).not.toContain('not using the start-up snapshot');

      // Other V8 flags than the blob was built with: node would abort on it; boot.sh says so and runs the plain file.
      const otherFlags = await bootSh(dir, ['--help'], { SWARM_NODE_FLAGS: '--max-semi-space-size=2' });
      expect(otherFlags.code).toBe(0);
      expect(otherFlags.stderr).toMatch(
        /boot\.sh: not using the start-up snapshot .*boot-agent\.blob \(built for size=\d+ flags=--max-semi-space-size=1 --no-lazy cpu=\S*, this is size=\d+ flags=--max-semi-space-size=2 cpu=\S*\); running .*boot-agent\.mjs/,
      );
      expect(otherFlags.stdout).toMatch(/Exit codes:/);

      // A blob from another node binary (its .id names another size): the same.
      await fs.writeFile(path.join(dir, 'boot-agent.blob.id'), id.replace(/^size=\d+/, 'size=1'));
      const otherNode = await bootSh(dir, ['--help']);
      expect(otherNode.code).toBe(0);
      expect(otherNode.stderr).toMatch(/not using the start-up snapshot .*built for size=1 /);

      // A blob built where V8 saw other CPU features (node would exit 14 on it): the same.
      await fs.writeFile(path.join(dir, 'boot-agent.blob.id'), id.replace(/ cpu=\S*/, ' cpu=pni,ssse3'));
      const otherCpu = await bootSh(dir, ['--help']);
      expect(otherCpu.code).toBe(0);
      expect(otherCpu.stderr).toMatch(/not using the start-up snapshot .*built for size=\d+ flags=\S+ --no-lazy cpu=pni,ssse3, this is /);
      expect(otherCpu.stdout).toMatch(/Exit codes:/);

      // Off: no word about it.
      const off = await bootSh(dir, ['--help'], { SWARM_BOOT_SNAPSHOT: 'off' });
      expect(off.code).toBe(0);
      expect(off.stderr).toBe('');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('is one self-contained file that runs on plain Node, and boot.sh execs it', async () => {
    const pkg = path.resolve(import.meta.dirname, '..');
    await new Promise<void>((resolve, reject) =>
      spawn('pnpm', ['run', 'build'], { cwd: pkg, stdio: 'ignore' }).on('exit', (c) =>
        c === 0 ? resolve() : reject(new Error(`build exited ${c}`)),
      ),
    );
    const dir = await fs.mkdtemp(path.join((await import('node:os')).tmpdir(), 'swarm-built-agent-'));
    try {
      await fs.copyFile(path.join(pkg, 'dist/boot-agent.mjs'), path.join(dir, 'boot-agent.mjs'));
      // The lean boot path: no SDK client (tRPC, undici) and no classic zod in the file every boot parses (~2.1 MB before).
      expect((await fs.stat(path.join(dir, 'boot-agent.mjs'))).size).toBeLessThan(400 * 1024);
      const out = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
        let stdout = '';
        const child = spawn('dash', [path.join(pkg, 'boot.sh'), '--help'], {
          cwd: dir,
          env: { PATH: process.env.PATH, SWARM_BOOT_AGENT: path.join(dir, 'boot-agent.mjs'), SWARM_NODE: process.execPath },
        });
        child.stdout.on('data', (c) => (stdout += c));
        child.on('exit', (code) => resolve({ code, stdout }));
      });
      expect(out.code).toBe(0);
      expect(out.stdout).toMatch(/Exit codes:[\s\S]*65 hash mismatch/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
