/**
 * The registry's configuration: one zod schema over the environment, parsed once at
 * start-up. Nothing else in the server reads process.env.
 */
import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { publicKeyFrom } from '@swarm/sdk/signing';
import { z } from 'zod';

const MiB = 1024 * 1024;

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));

const httpUrl = z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, ''));

const envSchema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  SWARM_DATA_DIR: z.string().default('./.swarm'),
  SWARM_PUBLIC_URL: httpUrl.optional(),
  SWARM_ADMIN_TOKEN: optionalString.pipe(z.string().min(24, 'must be at least 24 characters (use a random value)').optional()),
  /** Key for the registry's own signed download URLs (fs driver); generated into the data dir if unset. */
  SWARM_URL_SIGNING_KEY: optionalString.pipe(z.string().min(32).optional()),
  SWARM_MAX_BUNDLE_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(512 * MiB),
  SWARM_URL_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(10)
    .max(7 * 24 * 3600)
    .default(900),
  SWARM_SHUTDOWN_GRACE_SECONDS: z.coerce.number().min(0).max(600).default(10),
  /** A connection that sends nothing for this long (mid-request included) is closed. */
  SWARM_IDLE_TIMEOUT_SECONDS: z.coerce.number().min(1).max(3600).default(60),
  // At least 2: gc holds a bundle's lock on one connection while it updates the row on another.
  SWARM_DB_POOL_SIZE: z.coerce.number().int().min(2).max(200).default(10),
  /** '0': no named prepared statements at all (an escape hatch, e.g. for a pooler that does not keep them; db/client.ts `preparing`). */
  SWARM_DB_PREPARE: z.enum(['0', '1']).default('1'),
  /** Temporary upload objects older than this are swept at start-up (left by a crash mid-upload). */
  SWARM_UPLOAD_SWEEP_AFTER_SECONDS: z.coerce.number().min(0).default(3600),
  /**
   * gc deletes a stored bundle only once it is this old (and no live version uses it),
   * and orphaned objects only once they were written this long ago.
   */
  SWARM_GC_GRACE_SECONDS: z.coerce.number().min(0).default(3600),
  /** Executions still pending or booting after this long are marked failed ("abandoned"). */
  SWARM_EXECUTION_TIMEOUT_SECONDS: z.coerce.number().min(1).default(3600),
  /** How often a running execution's agent sends a heartbeat (told to it in the session answer). */
  SWARM_HEARTBEAT_SECONDS: z.coerce.number().min(0.5).max(300).default(5),
  /** A booting or running execution whose heartbeats stop for this many intervals is marked failed ("lost"). */
  SWARM_HEARTBEAT_MISSES: z.coerce.number().int().min(2).max(100).default(3),
  /** A cancelled execution whose agent never reports is marked cancelled this long after the request (also the grace of a timeout's backstop). */
  SWARM_CANCEL_GRACE_SECONDS: z.coerce.number().min(1).max(3600).default(30),
  /** Bytes of output one execution ships to the registry, unless its spawn says otherwise (outputMaxBytes). */
  SWARM_OUTPUT_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(4 * MiB),
  /** A spawn's bootstrap agent token that was never exchanged for a session is dead after this long. */
  SWARM_BOOTSTRAP_TOKEN_TTL_SECONDS: z.coerce.number().int().min(1).max(3600).default(300),
  /** Caps on what an execution's agent may report (its final report is never refused by the per-execution caps). */
  SWARM_MAX_EVENT_DATA_BYTES: z.coerce
    .number()
    .int()
    .min(256)
    .max(512 * 1024)
    .default(16 * 1024),
  SWARM_MAX_EVENTS_PER_EXECUTION: z.coerce.number().int().min(1).default(10_000),
  SWARM_MAX_EVENT_BYTES_PER_EXECUTION: z.coerce
    .number()
    .int()
    .min(1)
    .default(16 * MiB),
  /**
   * Longest time a cached release state or token stays cached (a backstop: changes
   * invalidate entries at once through LISTEN/NOTIFY); 0 turns the caches off.
   */
  SWARM_CACHE_TTL_SECONDS: z.coerce.number().min(0).max(3600).default(60),
  /** 1: every tRPC answer is also checked against its zod schema (trpc/answer.ts); the tests run this way. */
  SWARM_CHECK_ANSWERS: z.enum(['0', '1']).default('0'),
  /** Bundle uploads in progress at once, per token and in all (past either: 429 with Retry-After). */
  SWARM_MAX_UPLOADS_PER_TOKEN: z.coerce.number().int().min(1).max(10_000).default(8),
  SWARM_MAX_UPLOADS: z.coerce.number().int().min(1).max(10_000).default(64),
  /** An upload that sends fewer bytes than this per second over a window of SWARM_UPLOAD_RATE_WINDOW_SECONDS is cut (408); 0: no minimum. */
  SWARM_UPLOAD_MIN_BYTES_PER_SECOND: z.coerce
    .number()
    .int()
    .min(0)
    .default(16 * 1024),
  SWARM_UPLOAD_RATE_WINDOW_SECONDS: z.coerce.number().min(1).max(3600).default(30),
  /** `releases.diff` calls running at once, and waiting for a turn (past both: 429). */
  SWARM_MAX_DIFFS: z.coerce.number().int().min(1).max(64).default(2),
  SWARM_MAX_QUEUED_DIFFS: z.coerce.number().int().min(0).max(1000).default(8),
  /** The platform root's public key (SPKI PEM file): `keys.add` accepts only delegations it signed (docs/signing.md). */
  SWARM_TRUST_ROOT: optionalString,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: optionalString.pipe(z.url({ protocol: /^postgres(ql)?$/ }).optional()),
  S3_ENDPOINT: optionalString.pipe(httpUrl.optional()),
  S3_PUBLIC_ENDPOINT: optionalString.pipe(httpUrl.optional()),
  S3_ACCESS_KEY: optionalString,
  S3_SECRET_KEY: optionalString,
  S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be a valid S3 bucket name')
    .default('swarm-bundles'),
  S3_REGION: z.string().default('us-east-1'),
});

/** The names of every environment variable the registry reads (docs/deploy.md and README.md list exactly these). */
export const configVariables = Object.keys(envSchema.shape) as Array<keyof typeof envSchema.shape>;

export type S3Config = {
  endpoint: string;
  publicEndpoint: string;
  accessKey: string;
  secretKey: string;
  bucket: string;
  region: string;
};

export type Config = {
  host: string;
  port: number;
  dataDir: string;
  /** Base URL of the API as VMs and clients reach it; defaults to http://HOST:PORT. */
  publicUrl: string | undefined;
  adminToken: string | undefined;
  urlSigningKey: string | undefined;
  maxBundleBytes: number;
  urlTtlSeconds: number;
  dbPoolSize: number;
  /** Statements with parameters run as named prepared statements (SWARM_DB_PREPARE). */
  dbPrepare: boolean;
  /**
   * Objects under uploads/ older than this are left over from a crashed upload and are
   * removed at start-up; younger ones may be another replica's upload in flight.
   */
  uploadSweepAfterMs: number;
  /** An execution still pending or booting this long after it was spawned is abandoned. */
  executionTimeoutMs: number;
  gcGraceMs: number;
  /** Heartbeats, cancel and output of running executions (services/execution-control.ts). */
  control: { heartbeatSeconds: number; heartbeatMisses: number; cancelGraceMs: number; outputMaxBytes: number };
  /** Lifetime of a spawn's bootstrap agent token, unless the spawn asks for another. */
  bootstrapTokenTtlSeconds: number;
  /** What one execution's events may hold: per event (`data` as JSON text), and in all. */
  eventLimits: { maxDataBytes: number; maxEvents: number; maxBytes: number };
  /** On shutdown, requests still open after this long are cut off. */
  shutdownGraceMs: number;
  /** Max age of a cached release state or principal; 0: no caching (services/release-cache.ts). */
  cacheTtlSeconds: number;
  /** Check every tRPC answer against its zod schema as well as writing it (trpc/answer.ts). */
  checkAnswers: boolean;
  /** A connection with no traffic for this long is closed, even in the middle of an upload. */
  idleTimeoutMs: number;
  /** Caps and minimum rate of bundle uploads (http/upload-guard.ts). */
  uploads: { maxPerToken: number; max: number; minBytesPerSecond: number; rateWindowMs: number };
  /** Concurrency of `releases.diff` (services/diff.ts). */
  diffs: { max: number; maxQueued: number };
  /** The platform root (SWARM_TRUST_ROOT): delegations of tenant keys must verify under it. */
  trustRoot: KeyObject | undefined;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  /** Unset: start the embedded PostgreSQL in the data directory. */
  databaseUrl: string | undefined;
  /** Unset: store bundles on the local filesystem in the data directory. */
  s3: S3Config | undefined;
};

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
  // Checked on the raw values so it is reported together with any other problem.
  if (env.S3_ENDPOINT?.trim() && (!env.S3_ACCESS_KEY?.trim() || !env.S3_SECRET_KEY?.trim())) {
    problems.push('S3_ACCESS_KEY, S3_SECRET_KEY: both are required when S3_ENDPOINT is set');
  }
  let trustRoot: KeyObject | undefined;
  const rootFile = env.SWARM_TRUST_ROOT?.trim();
  if (rootFile) {
    try {
      trustRoot = publicKeyFrom(fs.readFileSync(rootFile, 'utf8'), 'the trust root');
    } catch (err) {
      problems.push(`SWARM_TRUST_ROOT: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (${rootFile})`);
    }
  }
  if (!parsed.success || problems.length) {
    throw new ConfigError(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
  const e = parsed.data;
  return {
    host: e.HOST,
    port: e.PORT,
    dataDir: path.resolve(e.SWARM_DATA_DIR),
    publicUrl: e.SWARM_PUBLIC_URL,
    adminToken: e.SWARM_ADMIN_TOKEN,
    urlSigningKey: e.SWARM_URL_SIGNING_KEY,
    maxBundleBytes: e.SWARM_MAX_BUNDLE_BYTES,
    urlTtlSeconds: e.SWARM_URL_TTL_SECONDS,
    dbPoolSize: e.SWARM_DB_POOL_SIZE,
    dbPrepare: e.SWARM_DB_PREPARE === '1',
    uploadSweepAfterMs: e.SWARM_UPLOAD_SWEEP_AFTER_SECONDS * 1000,
    executionTimeoutMs: e.SWARM_EXECUTION_TIMEOUT_SECONDS * 1000,
    gcGraceMs: e.SWARM_GC_GRACE_SECONDS * 1000,
    bootstrapTokenTtlSeconds: e.SWARM_BOOTSTRAP_TOKEN_TTL_SECONDS,
    control: {
      heartbeatSeconds: e.SWARM_HEARTBEAT_SECONDS,
      heartbeatMisses: e.SWARM_HEARTBEAT_MISSES,
      cancelGraceMs: e.SWARM_CANCEL_GRACE_SECONDS * 1000,
      outputMaxBytes: e.SWARM_OUTPUT_MAX_BYTES,
    },
    eventLimits: {
      maxDataBytes: e.SWARM_MAX_EVENT_DATA_BYTES,
      maxEvents: e.SWARM_MAX_EVENTS_PER_EXECUTION,
      maxBytes: e.SWARM_MAX_EVENT_BYTES_PER_EXECUTION,
    },
    shutdownGraceMs: e.SWARM_SHUTDOWN_GRACE_SECONDS * 1000,
    cacheTtlSeconds: e.SWARM_CACHE_TTL_SECONDS,
    checkAnswers: e.SWARM_CHECK_ANSWERS === '1',
    idleTimeoutMs: e.SWARM_IDLE_TIMEOUT_SECONDS * 1000,
    uploads: {
      maxPerToken: e.SWARM_MAX_UPLOADS_PER_TOKEN,
      max: e.SWARM_MAX_UPLOADS,
      minBytesPerSecond: e.SWARM_UPLOAD_MIN_BYTES_PER_SECOND,
      rateWindowMs: e.SWARM_UPLOAD_RATE_WINDOW_SECONDS * 1000,
    },
    diffs: { max: e.SWARM_MAX_DIFFS, maxQueued: e.SWARM_MAX_QUEUED_DIFFS },
    trustRoot,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    s3: e.S3_ENDPOINT
      ? {
          endpoint: e.S3_ENDPOINT,
          publicEndpoint: e.S3_PUBLIC_ENDPOINT ?? e.S3_ENDPOINT,
          accessKey: e.S3_ACCESS_KEY ?? '',
          secretKey: e.S3_SECRET_KEY ?? '',
          bucket: e.S3_BUCKET,
          region: e.S3_REGION,
        }
      : undefined,
  };
}
