/**
 * `releases.diff` cannot be used to exhaust the registry (#12 §3): the attack ran 8
 * concurrent diffs of a bundle that unpacks to gigabytes, each reading and gunzipping it
 * again, and resolves slowed from 2 ms to most of a second. Listings are cached per bundle
 * hash, and diffs that read the store take turns. Counted (store reads, reads open at
 * once), never timed.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Deps, Principal } from '../packages/server/src/services/context.js';
import { CachedListings, diffVersions } from '../packages/server/src/services/diff.js';
import type { BundleStore } from '../packages/server/src/storage/bundle-store.js';
import { bundleOf } from './support/bundles.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

const admin: Principal = { tokenId: null, name: 'test admin', scope: 'admin', tenantId: null };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The registry's store, counting reads; with `gated`, each read delivers nothing until
 * `open()` is called, so the reads a diff started stay open and can be counted.
 */
function countingStore(store: BundleStore, gated: boolean) {
  let release!: () => void;
  const gate = gated ? new Promise<void>((r) => (release = r)) : Promise.resolve();
  const counts = { reads: 0, open: 0, peakOpen: 0 };
  const counted = Object.create(store) as BundleStore;
  counted.read = async (hash: string): Promise<Readable> => {
    counts.reads++;
    counts.open++;
    counts.peakOpen = Math.max(counts.peakOpen, counts.open);
    const out = new PassThrough();
    out.on('close', () => counts.open--);
    void gate.then(async () => (await store.read(hash)).pipe(out));
    return out;
  };
  return { store: counted, counts, open: () => release?.() };
}

describe('releases.diff', () => {
  let reg: TestRegistry;
  let work: string;
  const ref = 'dl/app';
  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn' } });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-diff-'));
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'dl' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'dl', name: 'app' }));
    for (let i = 1; i <= 6; i++) {
      const file = await bundleOf(path.join(work, `v${i}`), {
        'main.sh': `echo ${i}\n`,
        'data.txt': randomBytes(10_000 * i).toString('hex'),
      });
      await c.uploadBundle(file, { workflow: ref });
    }
  });
  afterAll(async () => {
    await reg?.close();
    await fs.rm(work, { recursive: true, force: true });
  });

  it('a second diff of the same bundles reads nothing from the store (listings cached per bundle hash)', async () => {
    const { store, counts } = countingStore(reg.deps.store, false);
    const deps: Deps = { ...reg.deps, store };
    const first = await diffVersions(deps, admin, { workflow: ref, from: 1, to: 2 });
    expect(counts.reads).toBe(2);
    const again = await diffVersions(deps, admin, { workflow: ref, from: 1, to: 2 });
    expect(again).toEqual(first);
    expect(counts.reads).toBe(2);
    // One bundle in common with the cached ones: only the other is read.
    await diffVersions(deps, admin, { workflow: ref, from: 2, to: 3 });
    expect(counts.reads).toBe(3);
    // Through the API, on the registry's own cache: the same.
    const c = reg.client();
    const reads = { n: 0 };
    const read = reg.deps.store.read;
    reg.deps.store.read = (hash) => (reads.n++, read.call(reg.deps.store, hash));
    try {
      await c.call(() => c.trpc.releases.diff.query({ workflow: ref, from: 1, to: 2 }));
      const after = reads.n;
      expect(await c.call(() => c.trpc.releases.diff.query({ workflow: ref, from: 1, to: 2 }))).toEqual(first);
      expect(reads.n).toBe(after);
    } finally {
      reg.deps.store.read = read;
    }
  });

  it('6 concurrent diffs of uncached bundles: 2 read at once, 2 wait their turn, 2 are refused with TOO_MANY_REQUESTS', async () => {
    const { store, counts, open } = countingStore(reg.deps.store, true);
    const deps: Deps = { ...reg.deps, store, listings: new CachedListings({ max: 2, maxQueued: 2 }) };
    // from = to: one bundle per diff, a different one each.
    const diffs = [1, 2, 3, 4, 5, 6].map((v) =>
      diffVersions(deps, admin, { workflow: ref, from: v, to: v }).then(
        (d) => ({ ok: true as const, unchanged: d.unchanged }),
        (e: { code?: string; message?: string; hint?: string }) => ({ ok: false as const, code: e.code, message: e.message, hint: e.hint }),
      ),
    );
    // Wait (bounded) until the admitted diffs have opened their reads; refusals come at once.
    for (let i = 0; i < 100 && counts.open < 2; i++) await sleep(20);
    await sleep(100);
    expect(counts.open).toBe(2);
    open();
    const results = await Promise.all(diffs);
    expect(counts.peakOpen).toBe(2);
    expect(counts.reads).toBe(4);
    const refused = results.filter((r) => !r.ok);
    expect(refused).toHaveLength(2);
    for (const r of refused) {
      expect(r).toMatchObject({ code: 'TOO_MANY_REQUESTS' });
      expect(r.message).toMatch(/2 diffs are reading bundles and 2 are waiting/);
      expect(r.hint).toMatch(/SWARM_MAX_DIFFS/);
    }
    expect(results.filter((r) => r.ok)).toHaveLength(4);
  });

  it('8 concurrent diffs of the same two bundles read each bundle once', async () => {
    const { store, counts, open } = countingStore(reg.deps.store, true);
    const deps: Deps = { ...reg.deps, store, listings: new CachedListings({ max: 2, maxQueued: 8 }) };
    const diffs = Array.from({ length: 8 }, () => diffVersions(deps, admin, { workflow: ref, from: 4, to: 5 }));
    for (let i = 0; i < 100 && counts.open < 2; i++) await sleep(20);
    open();
    const results = await Promise.all(diffs);
    expect(new Set(results.map((r) => JSON.stringify(r))).size).toBe(1);
    expect(counts.reads).toBe(2);
  });
});
