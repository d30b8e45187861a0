/**
 * Per-replica caches for the hot paths (resolving the active version, spawning,
 * authenticating a token), invalidated across replicas by PostgreSQL notifications.
 *
 * - Every transaction that changes a workflow's release (activate, rollback, promote,
 *   canary set or clear) sends `pg_notify('swarm_release', <workflow id>)` (see `record`
 *   in services/releases.ts); revoking a token sends `pg_notify('swarm_tokens', <token hash>)`.
 *   PostgreSQL delivers them when the transaction commits, to every replica's listener,
 *   which drops the entry. A cached answer outlives a change by the notification's delay,
 *   except on the replica that made it, which drops its entries as the change commits
 *   (`changingRelease`, `changingTenantReleases` below).
 * - While the listener is not subscribed (PostgreSQL restarted, network cut) nothing is
 *   served from or stored in the caches, and every (re)subscription starts them empty:
 *   a notification missed meanwhile cannot leave a stale entry behind.
 * - A read that began before an invalidation does not store its answer (it may predate
 *   the change): each cache counts invalidations, and a load stores only if the count is
 *   unchanged since it began.
 * - Misses are cached like hits (the release cache's "no such workflow" entries), so an
 *   unknown workflow costs what a known one costs; creating a workflow notifies
 *   `swarm_release` with its id and its `tenant/name`, which drops those entries.
 * - Bounded: at most `max` entries (least recently used go first), each at most the TTL
 *   old (SWARM_CACHE_TTL_SECONDS), a backstop should a connection die silently.
 *
 * LRU with TTL from `lru-cache` (the npm standard, maintained by npm's author).
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { DbOrTx, Tx } from '../db/client.js';
import { type Listener, startListener } from '../db/listener.js';
import { notifyTenantReleasesChanged } from '../db/queries/keys.js';
import { RELEASE_CHANNEL, type WorkflowRelease, loadRelease } from '../db/queries/releases.js';
import { TOKEN_CHANNEL } from '../db/queries/tokens.js';
import type { CachedReleases, Deps, Principal } from './context.js';
const MAX_ENTRIES = 10_000;
/**
 * Misses live in an LRU of their own, smaller: anyone can ask for refs that do not exist
 * (random ids), and those must not push what exists out of the cache.
 */
const MAX_MISSES = 1_000;

/** A cache that serves only while its invalidation listener is subscribed. */
export class LiveCache<V extends object> {
  private readonly lru: LRUCache<string, V> | undefined;
  /** Keys known not to exist (with `cacheMisses`). */
  private readonly misses: LRUCache<string, true> | undefined;
  private invalidations = 0;
  private live = false;

  /** `ttlMs` 0: disabled, every call loads. `cacheMisses`: a load that found nothing is kept too, under its key. */
  constructor(ttlMs: number, opts: { max?: number; cacheMisses?: boolean } = {}) {
    // ttlResolution 0: read the clock at each check. lru-cache's default (1 ms) caches the
    // time and arms a timer to forget it, so a busy cache made up to 1,000 timers a second
    // (~2% of the registry's CPU while spawning, bench/README.md #6b).
    const timed = { ttl: ttlMs, ttlResolution: 0 };
    this.lru = ttlMs > 0 ? new LRUCache<string, V>({ max: opts.max ?? MAX_ENTRIES, ...timed }) : undefined;
    this.misses = ttlMs > 0 && opts.cacheMisses ? new LRUCache<string, true>({ max: MAX_MISSES, ...timed }) : undefined;
  }

  /** The cached value; null when it is cached as missing; undefined when nothing is cached. */
  get(key: string): V | null | undefined {
    if (!this.live) return undefined;
    return this.lru?.get(key) ?? (this.misses?.has(key) ? null : undefined);
  }

  /**
   * The cached value, else `load()`'s, stored under `keyOf(value)` (a miss under `key`, with
   * `cacheMisses`) unless something was invalidated (or the listener went down) while it loaded.
   */
  async load(key: string | undefined, load: () => Promise<V | null>, keyOf: (v: V) => string): Promise<V | null> {
    const hit = key === undefined ? undefined : this.get(key);
    if (hit !== undefined) return hit;
    const before = this.invalidations;
    const value = await load();
    if (this.live && this.invalidations === before) {
      if (value) this.lru?.set(keyOf(value), value);
      else if (key !== undefined) this.misses?.set(key, true);
    }
    return value;
  }

  invalidate(key: string): void {
    this.invalidations++;
    this.lru?.delete(key);
    this.misses?.delete(key);
  }

  /** Called by the listener: empties the cache, and serves from it only while `live`. */
  setLive(live: boolean): void {
    this.live = live;
    this.invalidations++;
    this.lru?.clear();
    this.misses?.clear();
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }
}

/**
 * Release state per workflow, found by id or by `tenant/name`. A workflow found is kept
 * under its id; a ref found to name no workflow is kept as missing under the ref itself
 * (an id or `tenant/name`), until the workflow's creation notifies it.
 */
export class ReleaseCache implements CachedReleases {
  private readonly entries: LiveCache<WorkflowRelease>;
  /** `tenant/name` → id. Workflows are never renamed, so this needs no invalidation. */
  private readonly ids: LRUCache<string, string> | undefined;

  constructor(ttlMs: number) {
    this.entries = new LiveCache(ttlMs, { cacheMisses: true });
    this.ids = ttlMs > 0 ? new LRUCache({ max: MAX_ENTRIES }) : undefined;
  }

  /** The workflow's release state, or null when there is no such workflow. */
  async lookup(db: DbOrTx, ref: string): Promise<WorkflowRelease | null> {
    const id = ref.includes('/') ? this.ids?.get(ref) : ref;
    // A `tenant/name` whose entry went (invalidated, evicted) is looked up, and kept if missing, by itself.
    const key = id !== undefined && this.entries.get(id) !== undefined ? id : ref;
    const release = await this.entries.load(
      key,
      () => loadRelease(db, ref),
      (r) => r.workflow.id,
    );
    if (release) this.ids?.set(`${release.workflow.tenant}/${release.workflow.name}`, release.workflow.id);
    return release;
  }

  /** Drops what is kept under `key`: a workflow's id, or a `tenant/name` kept as missing. */
  invalidate(key: string): void {
    this.entries.invalidate(key);
  }

  setLive(live: boolean): void {
    this.entries.setLive(live);
    this.ids?.clear();
  }

  /** For tests and diagnostics: the cached release state of the workflow with this id, if any. */
  peek(workflowId: string): WorkflowRelease | undefined {
    return this.entries.get(workflowId) ?? undefined;
  }
}

/** The caches of one replica: what services use (Caches), plus going live and dark with the listener. */
export type ReplicaCaches = { releases: ReleaseCache; principals: LiveCache<Principal> };

export function createCaches(ttlSeconds: number): ReplicaCaches {
  return { releases: new ReleaseCache(ttlSeconds * 1000), principals: new LiveCache(ttlSeconds * 1000) };
}

/** Subscribes to the invalidation channels; the caches serve only while subscribed. */
export function startCacheInvalidation(databaseUrl: string, caches: ReplicaCaches, log: Logger): Listener {
  const setLive = (live: boolean) => {
    caches.releases.setLive(live);
    caches.principals.setLive(live);
  };
  return startListener(
    databaseUrl,
    [RELEASE_CHANNEL, TOKEN_CHANNEL],
    {
      onNotify: (channel, payload) => {
        if (channel === RELEASE_CHANNEL) caches.releases.invalidate(payload);
        else if (channel === TOKEN_CHANNEL) caches.principals.invalidate(payload);
      },
      onUp: () => setLive(true),
      onDown: () => setLive(false),
    },
    log,
  );
}

/**
 * Runs a transaction that may change `workflowId`'s release, then drops this replica's
 * entry at once (other replicas drop theirs on the notification), so a caller reads its
 * own change on the next request here.
 */
export async function changingRelease<T>(deps: Pick<Deps, 'db' | 'caches'>, workflowId: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
  try {
    return await deps.db.transaction(fn);
  } finally {
    deps.caches.releases.invalidate(workflowId);
  }
}

/**
 * Runs a transaction that may change the signing state of every workflow of `tenantId` (its
 * keys, its policy): `fn` calls `notifyAll()` when it does. Like `changingRelease`, this
 * replica drops those workflows' entries at once, so the caller's next request here sees
 * the change (other replicas drop theirs on the notifications).
 */
export async function changingTenantReleases<T>(
  deps: Pick<Deps, 'db' | 'caches'>,
  tenantId: string,
  fn: (tx: Tx, notifyAll: () => Promise<void>) => Promise<T>,
): Promise<T> {
  const changed: string[] = [];
  try {
    return await deps.db.transaction((tx) =>
      fn(tx, async () => {
        changed.push(...(await notifyTenantReleasesChanged(tx, tenantId)));
      }),
    );
  } finally {
    for (const id of changed) deps.caches.releases.invalidate(id);
  }
}
