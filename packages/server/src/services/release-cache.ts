/**
 * Per-replica caches for the hot paths (resolving the active version, spawning,
 * authenticating a token), invalidated across replicas by PostgreSQL notifications.
 *
 * - Every transaction that changes a workflow's release (activate, rollback, promote,
 *   canary set or clear) sends `pg_notify('swarm_release', <workflow id>)` (see `record`
 *   in services/releases.ts); revoking a token sends `pg_notify('swarm_tokens', <token hash>)`.
 *   PostgreSQL delivers them when the transaction commits, to every replica's listener,
 *   which drops the entry. A cached answer outlives a change by the notification's delay.
 * - While the listener is not subscribed (PostgreSQL restarted, network cut) nothing is
 *   served from or stored in the caches, and every (re)subscription starts them empty:
 *   a notification missed meanwhile cannot leave a stale entry behind.
 * - A read that began before an invalidation does not store its answer (it may predate
 *   the change): each cache counts invalidations, and a load stores only if the count is
 *   unchanged since it began.
 * - Bounded: at most `max` entries (least recently used go first), each at most the TTL
 *   old (SWARM_CACHE_TTL_SECONDS), a backstop should a connection die silently.
 *
 * LRU with TTL from `lru-cache` (the npm standard, maintained by npm's author).
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { DbOrTx, Tx } from '../db/client.js';
import { type Listener, startListener } from '../db/listener.js';
import { RELEASE_CHANNEL, type WorkflowRelease, loadRelease } from '../db/queries/releases.js';
import { TOKEN_CHANNEL } from '../db/queries/tokens.js';
import type { CachedReleases, Deps, Principal } from './context.js';
const MAX_ENTRIES = 10_000;

/** A cache that serves only while its invalidation listener is subscribed. */
export class LiveCache<V extends object> {
  private readonly lru: LRUCache<string, V> | undefined;
  private invalidations = 0;
  private live = false;

  /** `ttlMs` 0: disabled, every call loads. */
  constructor(ttlMs: number, max = MAX_ENTRIES) {
    this.lru = ttlMs > 0 ? new LRUCache<string, V>({ max, ttl: ttlMs }) : undefined;
  }

  get(key: string): V | undefined {
    return this.live ? this.lru?.get(key) : undefined;
  }

  /**
   * The cached value, else `load()`'s, stored under `keyOf(value)` unless something was
   * invalidated (or the listener went down) while it loaded. Nulls are not stored.
   */
  async load(key: string | undefined, load: () => Promise<V | null>, keyOf: (v: V) => string): Promise<V | null> {
    const hit = key === undefined ? undefined : this.get(key);
    if (hit) return hit;
    const before = this.invalidations;
    const value = await load();
    if (value && this.live && this.invalidations === before) this.lru?.set(keyOf(value), value);
    return value;
  }

  invalidate(key: string): void {
    this.invalidations++;
    this.lru?.delete(key);
  }

  /** Called by the listener: empties the cache, and serves from it only while `live`. */
  setLive(live: boolean): void {
    this.live = live;
    this.invalidations++;
    this.lru?.clear();
  }

  get size(): number {
    return this.lru?.size ?? 0;
  }
}

/** Release state per workflow, found by id or by `tenant/name`. */
export class ReleaseCache implements CachedReleases {
  private readonly byId: LiveCache<WorkflowRelease>;
  /** `tenant/name` → id. Workflows are never renamed, so this needs no invalidation. */
  private readonly ids: LRUCache<string, string> | undefined;

  constructor(ttlMs: number) {
    this.byId = new LiveCache(ttlMs);
    this.ids = ttlMs > 0 ? new LRUCache({ max: MAX_ENTRIES }) : undefined;
  }

  /** The workflow's release state, or null when there is no such workflow (not cached). */
  async lookup(db: DbOrTx, ref: string): Promise<WorkflowRelease | null> {
    const id = ref.includes('/') ? this.ids?.get(ref) : ref;
    const release = await this.byId.load(
      id,
      () => loadRelease(db, ref),
      (r) => r.workflow.id,
    );
    if (release) this.ids?.set(`${release.workflow.tenant}/${release.workflow.name}`, release.workflow.id);
    return release;
  }

  invalidate(workflowId: string): void {
    this.byId.invalidate(workflowId);
  }

  setLive(live: boolean): void {
    this.byId.setLive(live);
    this.ids?.clear();
  }

  /** For tests and diagnostics: the cached entry, if any. */
  peek(workflowId: string): WorkflowRelease | undefined {
    return this.byId.get(workflowId);
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
