import type { Logger } from 'pino';
import type { BundleFile, TokenScopeKind } from '@swarm/sdk/contract';
import type { Config } from '../config.js';
import type { Db, DbOrTx } from '../db/client.js';
import type { ExecutionToSpawn, SpawnedExecution } from '../db/queries/executions.js';
import type { WorkflowRelease } from '../db/queries/releases.js';
import type { BundleStore } from '../storage/bundle-store.js';

/** What every service function gets: the registry's dependencies, nothing about HTTP. */
export type Deps = {
  db: Db;
  store: BundleStore;
  config: Config;
  /** Base URL of the API as clients and VMs reach it (SWARM_PUBLIC_URL, else where it listens). */
  publicUrl: () => string;
  log: Logger;
  /** Per-replica caches of release state and principals. */
  caches: Caches;
  /** Bundle listings for `releases.diff`, and its turns (services/diff.ts). */
  listings: BundleListings;
  /** Spawns, group-committed (services/spawn-batcher.ts). */
  spawns: SpawnQueue;
};

/** Inserts one spawn's execution together with the concurrent ones; undefined without an active version. */
export interface SpawnQueue {
  spawn(item: ExecutionToSpawn): Promise<SpawnedExecution | undefined>;
}

/**
 * The per-replica caches as services use them, declared here where they are consumed;
 * services/release-cache.ts implements them (and keeps them fresh across replicas).
 */
export interface Caches {
  releases: CachedReleases;
  /** Principals of minted API tokens, by the token's sha256 (hex). */
  principals: CachedPrincipals;
}

export interface CachedReleases {
  /** The workflow's release state by id or `tenant/name`, or null when there is no such workflow (cached too). */
  lookup(db: DbOrTx, ref: string): Promise<WorkflowRelease | null>;
  /** Drops the entry of a workflow id, or of an id or `tenant/name` cached as missing. */
  invalidate(key: string): void;
  /** For tests and diagnostics: the cached entry, if any. */
  peek(workflowId: string): WorkflowRelease | undefined;
}

/** The file listings of stored bundles, as `releases.diff` reads them; services/diff.ts implements it. */
export interface BundleListings {
  /** Each bundle's regular files by path (cached per hash; reads from the store take turns). */
  files(deps: Pick<Deps, 'store'>, hashes: string[]): Promise<Map<string, BundleFile>[]>;
}

export interface CachedPrincipals {
  /** The cached principal, else `load()`'s (stored under `keyOf` of it). */
  load(key: string, load: () => Promise<Principal | null>, keyOf: (p: Principal) => string): Promise<Principal | null>;
  invalidate(tokenHash: string): void;
}

/** Who is calling: resolved from the bearer token by services/auth.ts. */
export type Principal = {
  /** null for the bootstrap admin token from SWARM_ADMIN_TOKEN. */
  tokenId: string | null;
  name: string;
  scope: TokenScopeKind | 'agent';
  tenantId: string | null;
  /** For tenant tokens: the tenant's slug, so a `tenant/name` ref of another tenant is refused without a lookup. */
  tenantSlug?: string | undefined;
  /** For agent tokens: the one execution this principal may report on. */
  executionId?: string;
  /** For agent tokens: the metadata's bootstrap token (it can only be exchanged) or the agent's session. */
  agentCredential?: 'bootstrap' | 'session';
};
