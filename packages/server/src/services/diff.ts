/**
 * `swarm diff`: which files two versions' bundles add, remove and change, compared by
 * the sha256 of each file's content. Both bundles are read from the store and listed
 * by the shared archive walker (`@swarm/sdk/bundle-rules`); nothing is written anywhere.
 *
 * Listing a bundle may mean gunzipping gigabytes, so (#12 §3): listings are cached per
 * bundle hash (bundles never change; a bounded LRU from `lru-cache`, which also joins
 * concurrent reads of one bundle), and diffs that must read the store take turns:
 * SWARM_MAX_DIFFS at once, SWARM_MAX_QUEUED_DIFFS waiting, TOO_MANY_REQUESTS past that.
 */
import { createHash } from 'node:crypto';
import { type ArchiveSink, DEFAULT_BUNDLE_LIMITS, walkArchive } from '@swarm/sdk/bundle-rules';
import { LRUCache } from 'lru-cache';
import type { BundleFile, VersionDiff } from '@swarm/sdk/contract';
import { RegistryError } from '../errors.js';
import { findWorkflow } from './access.js';
import type { BundleListings, Deps, Principal } from './context.js';
import { releasableVersion } from './releases.js';

/** Cached listings hold at most this many files in all (two of the largest bundles). */
const MAX_CACHED_FILES = 2 * DEFAULT_BUNDLE_LIMITS.maxEntries;
/** What a refused diff is told to wait. */
const RETRY_AFTER_SECONDS = 5;

type Listing = Map<string, BundleFile>;

/** Per registry: the listings of bundles already read, and the turns of diffs that read the store. */
export class CachedListings implements BundleListings {
  private readonly listings = new LRUCache<string, Listing, Pick<Deps, 'store'>>({
    maxSize: MAX_CACHED_FILES,
    sizeCalculation: (files) => Math.max(1, files.size),
    fetchMethod: (hash, _stale, { context }) => bundleFiles(context, hash),
  });
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limits: { max: number; maxQueued: number }) {}

  /** The listings of these bundles: from the cache, else read from the store in a turn. */
  async files(deps: Pick<Deps, 'store'>, hashes: string[]): Promise<Listing[]> {
    const cached = hashes.map((hash) => this.listings.get(hash));
    if (cached.every((files): files is Listing => files !== undefined)) return cached;
    return this.inTurn(() => Promise.all(hashes.map(async (hash) => (await this.listings.fetch(hash, { context: deps }))!)));
  }

  private async inTurn<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running < this.limits.max) this.running++;
    else if (this.waiting.length < this.limits.maxQueued) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else {
      throw new RegistryError(
        'TOO_MANY_REQUESTS',
        `${this.running} diffs are reading bundles and ${this.waiting.length} are waiting (the limits are ${this.limits.max} and ${this.limits.maxQueued})`,
        'retry shortly; the limits are SWARM_MAX_DIFFS and SWARM_MAX_QUEUED_DIFFS',
        { retryAfterSeconds: RETRY_AFTER_SECONDS },
      );
    }
    try {
      return await fn();
    } finally {
      // The turn passes to the next waiting diff, if any.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

export async function diffVersions(deps: Deps, p: Principal, input: { workflow: string; from: number; to: number }): Promise<VersionDiff> {
  const wf = await findWorkflow(deps.db, p, input.workflow);
  const [from, to] = await deps.db.transaction(async (tx) =>
    Promise.all([releasableVersion(tx, wf, input.from), releasableVersion(tx, wf, input.to)]),
  );
  const [before, after] = (await deps.listings.files(deps, [from.bundleHash, to.bundleHash])) as [Listing, Listing];
  const diff: VersionDiff = { fromVersion: input.from, toVersion: input.to, added: [], removed: [], changed: [], unchanged: 0 };
  for (const [file, b] of before) {
    const a = after.get(file);
    if (!a) diff.removed.push(b);
    else if (a.sha256 !== b.sha256) diff.changed.push({ path: file, from: b, to: a });
    else diff.unchanged++;
  }
  for (const [file, a] of after) if (!before.has(file)) diff.added.push(a);
  for (const list of [diff.added, diff.removed, diff.changed]) list.sort((x, y) => (x.path < y.path ? -1 : 1));
  return diff;
}

/**
 * Every regular file of a stored bundle, by its path in the bundle, with its size and
 * content hash: the one archive walker, under the rules and limits the boot agent applies.
 */
async function bundleFiles(deps: Pick<Deps, 'store'>, hash: string): Promise<Listing> {
  const files: Listing = new Map();
  const hashing: ArchiveSink = {
    directory() {},
    file(file) {
      const digest = createHash('sha256');
      return {
        write: (chunk) => digest.update(chunk),
        end: () => files.set(file.rel, { path: file.rel, size: file.size, sha256: digest.digest('hex') }),
      };
    },
  };
  try {
    await walkArchive(await deps.store.read(hash), DEFAULT_BUNDLE_LIMITS, hashing);
  } catch (err) {
    throw new RegistryError('UNPROCESSABLE_CONTENT', `bundle ${hash} cannot be listed: ${(err as Error).message}`);
  }
  return files;
}
