/**
 * Load and slow clients, against the registry running as its own process (so its RSS and
 * open file descriptors are its own, read from /proc/<pid>).
 *
 * 1. A bounded soak (10 s warm-up + 50 s): small and 20 MiB uploads, resolves over REST
 *    and tRPC, spawns with the process driver and event streams, all at once with bounded
 *    concurrency. No request fails; RSS and fds are flat between the warm-up and the end;
 *    the registry never holds more PostgreSQL connections than SWARM_DB_POOL_SIZE.
 * 2. Slow clients: an upload that stalls is cut off after SWARM_IDLE_TIMEOUT_SECONDS and
 *    leaves nothing behind (no version, no object or multipart upload under uploads/);
 *    200 idle connections do not starve other clients and are closed in turn.
 *
 * The machine is shared and noisy: latencies are printed, never asserted. Every loop is
 * bounded in count and in time.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import postgres from 'postgres';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { END_OF_ARCHIVE, bundle as bundleOf, entryBytes } from '../../packages/boot-agent/test/support/archives.js';
import { freeLoopbackPort } from '../../packages/server/src/db/embedded.js';
import { S3Driver } from '../../packages/server/src/storage/s3.js';
import { type SwarmClient, createSwarmClient, listBundleEntries, packDirectory } from '../../packages/sdk/src/index.js';
import { spawnWorkflow } from '../../packages/sdk/src/orchestrator/index.js';
import { createTestDatabase } from '../support/registry.js';
import { type ServerProcess, startServerProcess } from '../support/server-process.js';

const MiB = 1024 * 1024;
const agentPath = path.resolve(import.meta.dirname, '../../packages/boot-agent/dist/boot-agent.mjs');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const rssOf = async (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(await fs.readFile(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const fdsOf = async (pid: number) => (await fs.readdir(`/proc/${pid}/fd`)).length;

type Registry = {
  server: ServerProcess;
  token: string;
  bucket: string;
  databaseUrl: string;
  store: S3Driver;
  admin: SwarmClient;
  port: number;
};

async function startRegistryProcess(env: Record<string, string>): Promise<Registry> {
  const s3 = inject('s3');
  const token = `test-admin-${randomBytes(16).toString('hex')}`;
  const bucket = `swarm-load-${randomBytes(4).toString('hex')}`;
  const databaseUrl = await createTestDatabase();
  const port = await freeLoopbackPort();
  const server = await startServerProcess({
    DATABASE_URL: databaseUrl,
    S3_ENDPOINT: s3.endpoint,
    S3_ACCESS_KEY: s3.accessKey,
    S3_SECRET_KEY: s3.secretKey,
    S3_BUCKET: bucket,
    S3_REGION: s3.region,
    SWARM_ADMIN_TOKEN: token,
    SWARM_SHUTDOWN_GRACE_SECONDS: '1',
    PORT: String(port),
    ...env,
  });
  const store = new S3Driver({
    endpoint: s3.endpoint,
    publicEndpoint: s3.endpoint,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    bucket,
    region: s3.region,
  });
  return { server, token, bucket, databaseUrl, store, admin: createSwarmClient({ url: server.url, token }), port };
}

/** Server log lines at error level or above (pino JSON on stdout). */
const serverErrors = (server: ServerProcess) =>
  server
    .stdout()
    .split('\n')
    .filter((l) => {
      try {
        return (JSON.parse(l) as { level?: number }).level! >= 50;
      } catch {
        return false;
      }
    });

const percentile = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;

async function storeKeys(store: S3Driver, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key);
  return keys;
}

/** Unfinished multipart uploads under prefix (they hold parts but list as no object). */
async function incompleteUploads(store: S3Driver, bucket: string, prefix: string): Promise<string[]> {
  const client = (
    store as unknown as {
      client: {
        listIncompleteUploadsQuery(b: string, p: string, k: string, u: string, d: string): Promise<{ uploads: Array<{ key: string }> }>;
      };
    }
  ).client;
  const res = await client.listIncompleteUploadsQuery(bucket, prefix, '', '', '');
  return res.uploads.map((u) => u.key);
}

describe('a 60 s soak of uploads, resolves, spawns and event streams', () => {
  const POOL_SIZE = 4;
  let reg: Registry;
  let work: string;
  let orchestrator: SwarmClient;
  let sql: postgres.Sql;
  const http = new Agent({ connections: 16 });

  beforeAll(async () => {
    await promisify(execFile)('pnpm', ['--filter', '@swarm/boot-agent', 'run', 'build']);
    reg = await startRegistryProcess({ SWARM_DB_POOL_SIZE: String(POOL_SIZE), LOG_LEVEL: 'warn' });
    sql = postgres(reg.databaseUrl, { max: 1, onnotice: () => {} });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-load-'));
    const c = reg.admin;
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'load' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'load', name: 'blobs' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'load', name: 'job' }));
    const dir = path.join(work, 'job');
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, 'index.js'), "console.log('load job ran');\n");
    await fs.writeFile(path.join(dir, 'swarm.json'), '{"entrypoint":["node","index.js"]}');
    const file = `${dir}.tar.gz`;
    await fs.writeFile(file, packDirectory(dir, await listBundleEntries(dir)));
    await c.uploadBundle(file, { workflow: 'load/job', activate: true });
    const { token } = await c.call(() => c.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'load' }));
    orchestrator = createSwarmClient({ url: reg.server.url, token });
  }, 180_000);
  afterAll(async () => {
    await sql?.end();
    await http.close();
    await reg?.server.stop('SIGTERM');
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('serves the mix without an error, with flat RSS and fds, within the PostgreSQL pool', async () => {
    const pid = reg.server.child.pid!;
    const base = reg.server.url;
    const auth = { authorization: `Bearer ${reg.token}` };
    const latencies = new Map<string, number[]>();
    const errors: string[] = [];
    const cacheDir = path.join(work, 'cache');
    const finished: string[] = [];
    const outputs = new Map<string, string>();
    // The rest of a big bundle: 20 MiB of random bytes in a tar, gzip'd (level 0: random bytes do not compress).
    const big = gzipSync(Buffer.concat([entryBytes({ path: 'data.bin', body: randomBytes(20 * MiB) }), END_OF_ARCHIVE]), { level: 0 });
    let seq = 0;

    /** Times fn under `kind`; a throw is an error, never a crash of the soak. */
    const timed = async (kind: string, fn: () => Promise<void>) => {
      const t0 = performance.now();
      try {
        await fn();
        const list = latencies.get(kind) ?? [];
        list.push(performance.now() - t0);
        latencies.set(kind, list);
      } catch (err) {
        errors.push(`${kind}: ${(err as Error).message}`);
      }
    };

    const upload = async (size: number) => {
      // A unique first file makes every upload new bytes (a new version), without a new 20 MiB buffer: a gzip
      // stream may hold several members, and the tar runs on across them.
      const head = gzipSync(entryBytes({ path: 'id.txt', body: `${process.pid}:${++seq}:${randomBytes(8).toString('hex')}` }));
      const rest = size > MiB ? big : gzipSync(Buffer.concat([entryBytes({ path: 'data.bin', body: randomBytes(size) }), END_OF_ARCHIVE]));
      const res = await request(`${base}/internal/bundles?workflow=load%2Fblobs`, {
        method: 'POST',
        dispatcher: http,
        headers: { ...auth, 'content-type': 'application/gzip', 'content-length': String(head.length + rest.length) },
        body: Readable.from([head, rest]),
        headersTimeout: 120_000,
        bodyTimeout: 120_000,
      });
      const json = (await res.body.json()) as { created?: boolean };
      if (res.statusCode !== 201 || !json.created) throw new Error(`upload answered ${res.statusCode} ${JSON.stringify(json)}`);
    };
    const resolveRest = async () => {
      const res = await request(`${base}/internal/workflow/load%2Fjob/active`, {
        dispatcher: http,
        headers: auth,
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      const json = (await res.body.json()) as { version?: number };
      if (res.statusCode !== 200 || typeof json.version !== 'number')
        throw new Error(`resolve answered ${res.statusCode} ${JSON.stringify(json)}`);
    };
    const resolveTrpc = async () => {
      const active = await reg.admin.resolveActive('load/job');
      if (typeof active.version !== 'number') throw new Error('versions.active without a version');
    };
    const watch = async (id: string) => {
      const types: string[] = [];
      const signal = AbortSignal.timeout(90_000);
      await orchestrator.watchExecution(id, (e) => types.push(e.type), { signal });
      if (types.at(-1) !== 'runtime_exited') {
        const agentSaid = outputs
          .get(id)
          ?.split('\n')
          .filter((l) => l.includes('swarm-boot-agent'))
          .join(' | ');
        throw new Error(
          `stream of ${id} ended with ${types.join(',')}${signal.aborted ? ' (timed out)' : ''}; agent: ${agentSaid ?? '(still running)'}`,
        );
      }
    };
    const spawnAndWatch = async () => {
      let live: Promise<void> | undefined;
      await timed('spawn', async () => {
        const out = await spawnWorkflow(orchestrator, 'load/job', {
          agentPath,
          cacheDir,
          timeoutMs: 90_000,
          onSpawned: (e) => (live = timed('watch-live', () => watch(e.id))),
        });
        if (out.exitCode !== 0 || !out.output.includes('load job ran'))
          throw new Error(`spawn exited ${out.exitCode}: ${out.output.slice(-500)}`);
        outputs.set(out.executionId, out.output);
        finished.push(out.executionId);
      });
      await live;
    };
    const replay = async () => {
      const id = finished[Math.floor(Math.random() * finished.length)];
      if (id) await timed('watch-replay', () => watch(id));
      else await sleep(200);
    };

    // Bounded concurrency that two cores sustain: 2 upload loops (one of them 20 MiB),
    // 2 resolve loops, 2 spawn loops (each with a live event stream), 1 replay loop.
    const loop = async (until: number, max: number, step: () => Promise<void>, pauseMs = 0) => {
      for (let i = 0; i < max && Date.now() < until; i++) {
        await step();
        if (pauseMs) await sleep(pauseMs);
      }
    };
    let pgMax = 0;
    let pgSamples = 0;
    const phase = async (ms: number) => {
      const until = Date.now() + ms;
      let sampling = true;
      const sampler = (async () => {
        for (let i = 0; sampling && i < 2000; i++) {
          const [row] =
            await sql`select count(*)::int as n from pg_stat_activity where application_name = 'swarm-registry' and datname = current_database()`;
          pgMax = Math.max(pgMax, row!.n as number);
          pgSamples++;
          await sleep(200);
        }
      })();
      await Promise.all([
        loop(until, 2000, () => timed('upload-small', () => upload(16 * 1024))),
        loop(until, 40, () => timed('upload-20MiB', () => upload(20 * MiB)), 500),
        loop(until, 20_000, () => timed('resolve-rest', resolveRest)),
        loop(until, 20_000, () => timed('resolve-trpc', resolveTrpc)),
        loop(until, 100, spawnAndWatch),
        loop(until, 100, spawnAndWatch),
        loop(until, 1000, replay, 100),
      ]);
      sampling = false;
      await sampler;
    };

    // The first spawn fills the boot agent's cache; after that every spawn is a cache hit.
    await spawnAndWatch();
    await phase(10_000);
    await sleep(2000);
    const warm = { rss: await rssOf(pid), fds: await fdsOf(pid) };
    await phase(50_000);
    await sleep(3000);
    const end = { rss: await rssOf(pid), fds: await fdsOf(pid) };

    const lines = [...latencies.entries()].sort().map(([kind, list]) => {
      const s = [...list].sort((a, b) => a - b);
      return `  ${kind.padEnd(13)} n=${String(s.length).padStart(5)}  p50=${percentile(s, 50).toFixed(1).padStart(7)} ms  p99=${percentile(s, 99).toFixed(1).padStart(7)} ms`;
    });
    console.log(
      [
        `soak: ${errors.length} errors`,
        ...lines,
        `  server RSS ${(warm.rss / MiB).toFixed(1)} MiB after warm-up, ${(end.rss / MiB).toFixed(1)} MiB at the end (${((end.rss - warm.rss) / MiB).toFixed(1)} MiB)`,
        `  server fds ${warm.fds} after warm-up, ${end.fds} at the end`,
        `  PostgreSQL connections of the registry: max ${pgMax} over ${pgSamples} samples (pool ${POOL_SIZE})`,
        ...errors.slice(0, 20).map((e) => `  error: ${e}`),
      ].join('\n'),
    );

    expect(errors).toEqual([]);
    for (const kind of ['upload-small', 'upload-20MiB', 'resolve-rest', 'resolve-trpc', 'spawn', 'watch-live', 'watch-replay']) {
      expect(latencies.get(kind)?.length ?? 0, kind).toBeGreaterThan(0);
    }
    expect(end.rss - warm.rss).toBeLessThan(64 * MiB);
    expect(end.fds).toBeLessThanOrEqual(warm.fds + 10);
    expect(pgSamples).toBeGreaterThan(0);
    expect(pgMax).toBeLessThanOrEqual(POOL_SIZE);
    expect(serverErrors(reg.server)).toEqual([]);
    expect(await storeKeys(reg.store, 'uploads/')).toEqual([]);
  }, 150_000);
});

describe('slow clients', () => {
  const IDLE_SECONDS = 3;
  let reg: Registry;
  const http = new Agent({ connections: 4 });

  beforeAll(async () => {
    reg = await startRegistryProcess({ SWARM_IDLE_TIMEOUT_SECONDS: String(IDLE_SECONDS), LOG_LEVEL: 'warn' });
    const c = reg.admin;
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'slow' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'slow', name: 'app' }));
  }, 120_000);
  afterAll(async () => {
    await http.close();
    await reg?.server.stop('SIGTERM');
  });

  /** A raw loopback socket that records when and by whom it was closed (`abort` closes it from this side). */
  const rawSocket = (port: number) =>
    new Promise<{ socket: net.Socket; abort: () => void; closed: Promise<{ byServer: boolean; at: number; received: string }> }>(
      (resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        let received = '';
        let destroyedByUs = false;
        socket.on('data', (c: Buffer) => (received += c.toString()));
        socket.on('error', () => {});
        socket.on('end', () => socket.end());
        const closed = new Promise<{ byServer: boolean; at: number; received: string }>((r) =>
          socket.once('close', () => r({ byServer: !destroyedByUs, at: performance.now(), received })),
        );
        const abort = () => {
          destroyedByUs = true;
          socket.destroy();
        };
        socket.once('connect', () => resolve({ socket, abort, closed }));
        socket.once('error', reject);
      },
    );
  const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, sleep(ms).then(() => null)]);

  it('cuts off an upload that stalls after the idle timeout, and keeps nothing of it', async () => {
    const { socket, abort, closed } = await rawSocket(reg.port);
    const total = 12 * MiB;
    socket.write(
      `POST /internal/bundles?workflow=slow%2Fapp&activate=true HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${reg.token}\r\n` +
        `Content-Type: application/gzip\r\nContent-Length: ${total}\r\n\r\n`,
    );
    // More than one 8 MiB part of a real bundle: the registry has started a multipart upload by now.
    const bundle = gzipSync(Buffer.concat([entryBytes({ path: 'data.bin', body: randomBytes(total) }), END_OF_ARCHIVE]), { level: 0 });
    const sent = bundle.subarray(0, 9 * MiB);
    await new Promise<void>((r) => socket.write(sent, () => r()));
    // Trickle: the bundle's next byte every second (under the idle timeout), five times, then nothing.
    let trickled = 0;
    for (let i = 0; i < 5 && !socket.destroyed; i++) {
      await sleep(1000);
      socket.write(bundle.subarray(sent.length + i, sent.length + i + 1));
      trickled++;
    }
    const stalledAt = performance.now();
    const result = await within(closed, 30_000);
    console.log(
      `stalled upload: ${trickled} bytes trickled after 9 MiB, then closed ${result ? `by the ${result.byServer ? 'server' : 'client'} ${((result.at - stalledAt) / 1000).toFixed(1)} s after the last byte` : 'never (30 s)'} (idle timeout ${IDLE_SECONDS} s)`,
    );
    expect(result).not.toBeNull();
    expect(result!.byServer).toBe(true);
    abort();

    const c = reg.admin;
    expect(await c.call(() => c.trpc.workflows.versions.query({ workflow: 'slow/app' }))).toEqual([]);
    // Clean-up runs as the request fails; give the store a bounded moment.
    let left: { objects: string[]; multipart: string[] } = { objects: [], multipart: [] };
    for (let i = 0; i < 40; i++) {
      left = { objects: await storeKeys(reg.store, 'uploads/'), multipart: await incompleteUploads(reg.store, reg.bucket, 'uploads/') };
      if (!left.objects.length && !left.multipart.length) break;
      await sleep(250);
    }
    expect(left).toEqual({ objects: [], multipart: [] });
    expect(await storeKeys(reg.store, 'blobs/')).toEqual([]);
    expect(serverErrors(reg.server)).toEqual([]);
  }, 60_000);

  it('200 idle connections do not starve other clients, and are closed after the idle timeout', async () => {
    const pid = reg.server.child.pid!;
    const c = reg.admin;
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'slow', name: 'ok' }));
    await c.uploadBundle(Readable.from([bundleOf([{ path: 'data.bin', body: randomBytes(1024) }]).bytes]), {
      workflow: 'slow/ok',
      activate: true,
    });
    const resolve = async () => {
      const res = await request(`${reg.server.url}/internal/workflow/slow%2Fok/active`, {
        dispatcher: http,
        headers: { authorization: `Bearer ${reg.token}` },
      });
      await res.body.dump();
      return res.statusCode;
    };
    const health = async () => {
      const res = await request(`${reg.server.url}/healthz`, { dispatcher: http });
      await res.body.dump();
      return res.statusCode;
    };
    await resolve();
    await health();
    await sleep(500);
    const baseline = await fdsOf(pid);

    const idle = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const s = await rawSocket(reg.port);
        // Half send nothing, half a request line and a header without the blank line.
        if (i % 2) s.socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
        return s;
      }),
    );
    const openedAt = performance.now();
    await sleep(200);
    const fdsWithIdle = await fdsOf(pid);

    // Normal traffic while they are open: bounded in count and time (under the idle timeout).
    const times: number[] = [];
    const statuses = new Map<number, number>();
    const until = Date.now() + (IDLE_SECONDS * 1000) / 2;
    for (let i = 0; i < 200 && Date.now() < until; i++) {
      const t0 = performance.now();
      const status = i % 2 ? await health() : await resolve();
      times.push(performance.now() - t0);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    const stillOpen = idle.filter((s) => !s.socket.destroyed && !s.socket.readableEnded).length;

    const results = await within(Promise.all(idle.map((s) => s.closed)), 30_000);
    for (const s of idle) s.abort();
    const sorted = [...times].sort((a, b) => a - b);
    const closeAfter = results ? results.map((r) => (r.at - openedAt) / 1000).sort((a, b) => a - b) : [];
    await sleep(500);
    const after = await fdsOf(pid);
    console.log(
      [
        `200 idle connections: server fds ${baseline} before, ${fdsWithIdle} with them open, ${after} after they closed`,
        `  ${times.length} normal requests while ${stillOpen} of them were still open: p50=${percentile(sorted, 50).toFixed(1)} ms p99=${percentile(sorted, 99).toFixed(1)} ms max=${sorted.at(-1)?.toFixed(1)} ms; statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
        `  idle ones closed ${results ? `by the server after ${closeAfter[0]!.toFixed(1)}–${closeAfter.at(-1)!.toFixed(1)} s` : 'not within 30 s'} (idle timeout ${IDLE_SECONDS} s)`,
      ].join('\n'),
    );

    expect(times.length).toBeGreaterThan(0);
    expect([...statuses.keys()]).toEqual([200]);
    expect(fdsWithIdle).toBeGreaterThanOrEqual(baseline + 200);
    expect(results).not.toBeNull();
    expect(results!.every((r) => r.byServer)).toBe(true);
    expect(after).toBeLessThanOrEqual(baseline + 10);
    expect(serverErrors(reg.server)).toEqual([]);
  }, 60_000);

  it('an event stream quiet for longer than the idle timeout resumes where it was cut, without duplicates', async () => {
    const c = reg.admin;
    const { execution, metadata } = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'slow/ok' }));
    const bootstrap = createSwarmClient({ url: reg.server.url, token: metadata.execution!.agentToken });
    const { sessionToken } = await bootstrap.call(() => bootstrap.trpc.executions.exchangeToken.mutate({ executionId: execution.id }));
    const agent = createSwarmClient({ url: reg.server.url, token: sessionToken });
    const append = (seq: number, type: 'metadata_loaded' | 'runtime_started' | 'runtime_exited', data: Record<string, unknown> = {}) =>
      agent.call(() => agent.trpc.executions.appendEvent.mutate({ executionId: execution.id, seq, type, data }));
    await append(0, 'metadata_loaded');
    const got: string[] = [];
    const watching = c.watchExecution(execution.id, (e) => got.push(`${e.seq}:${e.type}`), { signal: AbortSignal.timeout(30_000) });
    // Quiet for longer than the idle timeout: the server drops the stream, the client reconnects.
    await sleep((IDLE_SECONDS + 1) * 1000);
    await append(1, 'runtime_started');
    await sleep((IDLE_SECONDS + 1) * 1000);
    await append(2, 'runtime_exited', { code: 0 });
    await watching;
    console.log(`quiet event stream: ${got.join(', ')}`);
    expect(got).toEqual(['0:metadata_loaded', '1:runtime_started', '2:runtime_exited']);
  }, 60_000);
});
