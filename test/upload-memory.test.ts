/**
 * A 200 MiB upload streams through the registry: the server's peak RSS grows by at most
 * 64 MiB while it stores the bundle in the S3 server. The registry runs in its own
 * process so its memory is measured alone (/proc/<pid>/status, peak reset through
 * clear_refs before the upload). Memory, not time, is asserted.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freeLoopbackPort } from '../packages/server/src/db/embedded.js';
import { bundle, streamedBundle } from '../packages/boot-agent/test/support/archives.js';
import { createSwarmClient } from '../packages/sdk/src/index.js';
import { createTestDatabase } from './support/registry.js';
import { type ServerProcess, startServerProcess } from './support/server-process.js';

const MiB = 1024 * 1024;
const SIZE = 200 * MiB;

const procStatus = async (pid: number, field: 'VmRSS' | 'VmHWM') => {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(await fs.readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
};

describe('a 200 MiB upload', () => {
  let server: ServerProcess;
  const token = `test-admin-${randomBytes(16).toString('hex')}`;
  beforeAll(async () => {
    const s3 = inject('s3');
    server = await startServerProcess({
      DATABASE_URL: await createTestDatabase(),
      S3_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY: s3.accessKey,
      S3_SECRET_KEY: s3.secretKey,
      S3_BUCKET: `swarm-mem-${randomBytes(4).toString('hex')}`,
      SWARM_ADMIN_TOKEN: token,
      PORT: String(await freeLoopbackPort()),
    });
    const c = createSwarmClient({ url: server.url, token });
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'big' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'big', name: 'app' }));
  });
  afterAll(() => server?.stop('SIGTERM'));

  it('grows the server by at most 64 MiB and stores the right bytes', async () => {
    const pid = server.child.pid!;
    const payload = await streamedBundle(randomBytes(MiB), SIZE);

    // Warm up the code path with a small upload, then measure from a settled state.
    const post = (body: Readable | Buffer, length: number) =>
      request(`${server.url}/internal/bundles?workflow=big/app`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip', 'content-length': String(length) },
        body,
      });
    const warm = bundle([{ path: 'warm.bin', body: randomBytes(1000) }]).bytes;
    await (await post(warm, warm.length)).body.json();
    await new Promise((r) => setTimeout(r, 500));
    const before = await procStatus(pid, 'VmRSS');
    await fs.writeFile(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM to the current RSS

    const started = process.hrtime.bigint();
    const res = await post(payload.stream(), payload.length);
    const result = (await res.body.json()) as { bundleHash: string; size: number; created: boolean };
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const peak = await procStatus(pid, 'VmHWM');

    expect(res.statusCode).toBe(201);
    expect(result).toMatchObject({ bundleHash: payload.hash, size: payload.length, created: true });
    const growth = peak - before;
    console.log(
      `200 MiB upload to S3: ${(SIZE / MiB / seconds).toFixed(1)} MiB/s, server RSS ${(before / MiB).toFixed(0)} MiB before, peak ${(peak / MiB).toFixed(0)} MiB, growth ${(growth / MiB).toFixed(1)} MiB`,
    );
    expect(growth).toBeLessThanOrEqual(64 * MiB);
  }, 300_000);
});
