/**
 * Figure 3: a 200 MiB bundle through POST /internal/bundles (hash declared up front, as the
 * SDK sends it) into the S3 server, against minio's putObject of the same bytes straight to
 * the S3 server, which is also the floor: the registry cannot store faster than the store
 * accepts. The registry runs in its own process; its peak RSS growth during the upload is
 * read from /proc (VmHWM, reset through clear_refs), as test/upload-memory.test.ts does.
 * Every run sends a different bundle (a tar.gz around a fresh random block), which the
 * registry checks entry by entry as it streams in, as it does every upload.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import { bundle, streamedBundle } from '../packages/boot-agent/test/support/archives.js';
import type { BenchEnv } from './lib/env.js';
import { procMemory, resetPeak } from './lib/env.js';
import { type FigureContext, type Row, row } from './lib/figure.js';
import { MiB, summarize } from './lib/stats.js';

const SIZE = 200 * MiB;

/** A bundle of about SIZE bytes: a tar.gz around a fresh random MiB repeated (see streamedBundle). */
const payload = () => streamedBundle(randomBytes(MiB), SIZE);

export async function uploadFigure(env: BenchEnv, ctx: FigureContext, runs: number): Promise<Row[]> {
  const reg = await env.startRegistry();
  const pid = reg.child.pid!;
  const admin = reg.client;
  await admin.call(() => admin.trpc.tenants.create.mutate({ slug: 'bench' }));
  await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'bench', name: 'big' }));
  const minio = env.minio();
  const bucket = await env.createBucket();
  const post = async (body: Readable | Buffer, length: number, hash: string) => {
    const res = await request(`${reg.url}/internal/bundles?workflow=bench/big`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${reg.token}`,
        'content-type': 'application/gzip',
        'content-length': String(length),
        'x-bundle-sha256': hash,
      },
      body,
    });
    const json = (await res.body.json()) as { bundleHash?: string; size?: number };
    if (res.statusCode !== 201 || json.bundleHash !== hash || json.size !== length)
      throw new Error(`upload answered ${res.statusCode}: ${JSON.stringify(json)}`);
  };
  try {
    const warm = bundle([{ path: 'warm.bin', body: randomBytes(1000) }]);
    await post(warm.bytes, warm.bytes.length, warm.hash);
    await minio.putObject(bucket, 'warm', warm.bytes);

    const base: number[] = [];
    const ours: number[] = [];
    const growth: number[] = [];
    for (let i = 0; i < runs; i++) {
      let p = await payload();
      let t = performance.now();
      await minio.putObject(bucket, `direct-${i}`, p.stream(), p.length);
      base.push(p.length / MiB / ((performance.now() - t) / 1000));

      p = await payload();
      await new Promise((r) => setTimeout(r, 300));
      const before = await procMemory(pid, 'VmRSS');
      await resetPeak(pid);
      t = performance.now();
      await post(p.stream(), p.length, p.hash);
      ours.push(p.length / MiB / ((performance.now() - t) / 1000));
      growth.push((await procMemory(pid, 'VmHWM')) - before);
      ctx.log(
        `  #3 run ${i + 1}: minio putObject ${base.at(-1)!.toFixed(1)} MiB/s, registry ${ours.at(-1)!.toFixed(1)} MiB/s, RSS growth ${(growth.at(-1)! / MiB).toFixed(1)} MiB`,
      );
    }
    const baselineWhat = 'minio putObject of the same 200 MiB straight to the S3 server (Swift + s3api)';
    return [
      row({
        id: '3a',
        what: '200 MiB upload through POST /internal/bundles, throughput',
        unit: 'MiB/s',
        baselineWhat,
        baseline: summarize(base),
        ours: summarize(ours),
        target: { on: 'ratio', op: '>=', value: 0.8 },
      }),
      row({
        id: '3b',
        what: '200 MiB upload: registry peak RSS growth',
        unit: 'MiB',
        ours: summarize(growth.map((g) => g / MiB)),
        target: { on: 'value', op: '<=', value: 64 },
      }),
    ];
  } finally {
    await reg.stop('SIGTERM');
  }
}
