import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Db } from '../db/client.js';
import type { BundleStore } from '../storage/bundle-store.js';

/** What every service function gets: the registry's dependencies, nothing about HTTP. */
export type Deps = {
  db: Db;
  store: BundleStore;
  config: Config;
  log: Logger;
};

/** Who is calling: resolved from the bearer token by services/auth.ts. */
export type Principal = {
  /** null for the bootstrap admin token from SWARM_ADMIN_TOKEN. */
  tokenId: string | null;
  name: string;
  scope: 'admin' | 'orchestrator' | 'tenant';
  tenantId: string | null;
};
