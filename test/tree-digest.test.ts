/**
 * The tree digest (what a bundle unpacks to, see @swarm/sdk/bundle-rules' tree-digest.ts):
 * computed by the registry while an upload streams in, on both stores and on both upload
 * paths (declared hash, and hash learnt at the end), stored with the bundle, returned
 * wherever the bundle's hash is (REST, tRPC, the spawn's VM metadata). A bundle stored
 * before digests existed has none (null; no metadata field) until its bytes are uploaded again.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundle } from '../packages/boot-agent/test/support/archives.js';
import { type StorageKind, type TestRegistry, sha256, startTestRegistry } from './support/registry.js';

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/**
 * The digest written out from its definition, independently of treeDigest(): records
 * sorted by path, unpacked modes (an executable bit → 755), every implied directory.
 */
function expectedDigest(files: Array<{ path: string; body: string; exec?: boolean }>, dirs: string[]): string {
  const records = [
    ...files.map((f) => ({ path: f.path, r: `file ${f.exec ? '755' : '644'} ${Buffer.byteLength(f.body)} ${sha(f.body)} ${f.path}\0` })),
    ...dirs.map((d) => ({ path: d, r: `dir 755 0 - ${d}\0` })),
  ].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return sha(`swarm-tree-v1\n${records.map((x) => x.r).join('')}`);
}

const FILES = [
  { path: 'app/run.sh', body: '#!/bin/sh\necho hi\n', exec: true },
  { path: 'app/lib/util.txt', body: 'util' },
  { path: 'README', body: 'readme' },
];

/** The archive: entries out of order, archive modes that are not the unpacked ones, an implied directory (app/lib). */
function archive(seed: string): { bytes: Buffer; digest: string } {
  const files = FILES.map((f) => ({ ...f, body: `${f.body}${seed}` }));
  const { bytes } = bundle([
    { path: 'README', body: files[2]!.body, mode: 0o600 },
    { path: 'app/', type: 'Directory', mode: 0o700 },
    { path: 'app/run.sh', body: files[0]!.body, mode: 0o700 },
    { path: 'app/lib/util.txt', body: files[1]!.body, mode: 0o640 },
  ]);
  return { bytes, digest: expectedDigest(files, ['app', 'app/lib']) };
}

describe.each<StorageKind>(['fs', 's3'])('tree digests on the %s store', (kind) => {
  let reg: TestRegistry;
  let sql: postgres.Sql;
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: kind });
    sql = postgres(reg.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    for (const name of ['declared', 'undeclared', 'legacy']) await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name }));
  });
  afterAll(async () => {
    await sql?.end();
    await reg?.close();
  });

  const upload = (workflow: string, body: Buffer, declare: boolean) =>
    reg.fetch(`/internal/bundles?workflow=${workflow}&activate=true`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/gzip', ...(declare ? { 'x-bundle-sha256': sha256(body) } : {}) },
    });

  /** Every answer that names the bundle's hash, each with its tree digest. */
  async function digestsShown(workflow: string, hash: string) {
    const c = reg.client();
    const rest = await (await reg.fetch(`/internal/workflow/${encodeURIComponent(workflow)}/active`)).json();
    const restBundle = await (await reg.fetch(`/internal/bundles/${hash}`)).json();
    const active = await c.call(() => c.trpc.versions.active.query({ workflow }));
    const bundleInfo = await c.call(() => c.trpc.bundles.get.query({ hash }));
    const [newest] = await c.call(() => c.trpc.workflows.versions.query({ workflow }));
    const spawned = await c.call(() => c.trpc.executions.spawn.mutate({ workflow }));
    expect(rest.bundleHash).toBe(hash);
    expect(spawned.metadata.bundle?.hash).toBe(hash);
    return {
      restActive: rest.treeDigest,
      restBundle: restBundle.treeDigest,
      trpcActive: active.treeDigest,
      trpcBundle: bundleInfo.treeDigest,
      versions: newest?.treeDigest,
      metadata: spawned.metadata.bundle && 'treeDigest' in spawned.metadata.bundle ? spawned.metadata.bundle.treeDigest : 'absent',
    };
  }
  const everywhere = (v: unknown) => ({ restActive: v, restBundle: v, trpcActive: v, trpcBundle: v, versions: v, metadata: v });

  for (const declare of [true, false]) {
    const workflow = declare ? 'acme/declared' : 'acme/undeclared';
    it(`is computed at upload ${declare ? 'with' : 'without'} a declared hash, and shown wherever the hash is`, async () => {
      const { bytes, digest } = archive(`${kind}-${declare}`);
      const res = await upload(workflow, bytes, declare);
      expect(res.status).toBe(201);
      const up = await res.json();
      expect(up).toMatchObject({ bundleHash: sha256(bytes), treeDigest: digest });
      expect(await digestsShown(workflow, sha256(bytes))).toEqual(everywhere(digest));
    });
  }

  it('is null for a bundle stored before digests existed (no metadata field), and filled when its bytes are uploaded again', async () => {
    const { bytes, digest } = archive(`${kind}-legacy`);
    const hash = sha256(bytes);
    expect((await upload('acme/legacy', bytes, true)).status).toBe(201);
    await sql`update bundles set tree_digest = null where hash = ${hash}`;
    const c = reg.client();
    const shown = await digestsShown('acme/legacy', hash);
    expect(shown).toMatchObject({ restBundle: null, trpcBundle: null, versions: null, metadata: 'absent' });

    const again = await upload('acme/legacy', bytes, false);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ bundleHash: hash, treeDigest: digest, created: false });
    expect(await c.call(() => c.trpc.bundles.get.query({ hash }))).toMatchObject({ treeDigest: digest });
  });

  it('is filled by the next swarm push of a bundle stored before digests existed (the SDK sends the bytes again)', async () => {
    const { bytes, digest } = archive(`${kind}-legacy-push`);
    const hash = sha256(bytes);
    expect((await upload('acme/legacy', bytes, true)).status).toBe(201);
    await sql`update bundles set tree_digest = null where hash = ${hash}`;
    const file = path.join(reg.dataDir, 'legacy-push.tar.gz');
    await fs.writeFile(file, bytes);
    const c = reg.client();
    const pushed = await c.uploadBundle(file, { workflow: 'acme/legacy' });
    expect(pushed).toMatchObject({ bundleHash: hash, treeDigest: digest, uploaded: true });
    // Once it has one, the bytes are not sent again.
    expect(await c.uploadBundle(file, { workflow: 'acme/legacy' })).toMatchObject({ treeDigest: digest, uploaded: false });
  });

  it('refuses a digest that is not a sha256 in the database (CHECK constraint)', async () => {
    const { bytes } = archive(`${kind}-check`);
    expect((await upload('acme/legacy', bytes, true)).status).toBe(201);
    const err = await sql`update bundles set tree_digest = 'not-a-digest' where hash = ${sha256(bytes)}`.catch((e: Error) => e);
    expect(String(err)).toMatch(/bundles_tree_digest_format/);
  });
});
