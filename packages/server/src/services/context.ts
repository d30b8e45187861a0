import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import type { BundleStore } from '../storage/bundle-store.js';
import type { Caches } from './release-cache.js';

/** What every service function gets: the registry's dependencies, nothing about HTTP. */
export type Deps = {
  db: Db;
  store: BundleStore;
  config: Config;
  /** Base URL of the API as clients and VMs reach it (SWARM_PUBLIC_URL, else where it listens). */
  publicUrl: () => string;
  log: Logger;
  /** Per-replica caches of release state and principals (services/release-cache.ts). */
  caches: Caches;
};

/** Who is calling: resolved from the bearer token by services/auth.ts. */
export type Principal = {
  /** null for the bootstrap admin token from SWARM_ADMIN_TOKEN. */
  tokenId: string | null;
  name: string;
  scope: 'admin' | 'orchestrator' | 'tenant' | 'agent';
  tenantId: string | null;
  /** For agent tokens: the one execution this principal may report on. */
  executionId?: string;
};
