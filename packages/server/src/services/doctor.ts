/**
 * `swarm doctor`, server side: checks what the registry depends on, from where the
 * registry runs, and says for each check what was found and what to do about it. The
 * CLI has no database or store credentials, so the checks run here; every check has a
 * timeout, so a dead dependency gives a `fail` line instead of a hang.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import type { DoctorCheck, DoctorReport } from '@swarm/sdk/contract';
import { readMigrations } from '../db/migration-files.js';
import { appliedMigrationHashes, serverVersion } from '../db/queries/system.js';
import { withTimeout } from '../timeout.js';
import { requireAdmin } from './access.js';
import type { Deps, Principal } from './context.js';

/** Per check; a store or database that does not answer within this is reported as failed. */
export const DOCTOR_CHECK_TIMEOUT_MS = 5000;

/** Probe objects live here, away from blobs/ and uploads/, so GC and the upload sweep never meet them. */
export const DOCTOR_PREFIX = 'doctor/';

/** Store clock differences (ms) above these warn / fail: SigV4 refuses requests more than 15 minutes off. */
export const CLOCK_SKEW_WARN_MS = 30_000;
export const CLOCK_SKEW_FAIL_MS = 15 * 60_000;

const registryVersion: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

const ok = (name: string, detail: string): DoctorCheck => ({ name, status: 'ok', detail });
const fail = (name: string, detail: string, hint: string): DoctorCheck => ({ name, status: 'fail', detail, hint });
const reason = (err: unknown) => (err as Error)?.message || (err as { code?: string })?.code || String(err);

export async function runDoctor(deps: Deps, principal: Principal): Promise<DoctorReport> {
  requireAdmin(principal);
  const [database, migrations, bucket, roundTrip, clock] = await Promise.all([
    checkDatabase(deps),
    checkMigrations(deps),
    checkBucket(deps),
    checkRoundTrip(deps),
    checkClock(deps),
  ]);
  return { version: registryVersion, storage: deps.store.driver.kind, checks: [database, migrations, bucket, ...roundTrip, clock] };
}

async function timed<T>(fn: () => Promise<T>, what: string): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await withTimeout(fn(), what, DOCTOR_CHECK_TIMEOUT_MS);
  return { value, ms: Math.round(performance.now() - start) };
}

async function checkDatabase(deps: Deps): Promise<DoctorCheck> {
  try {
    const { value, ms } = await timed(() => serverVersion(deps.db), 'PostgreSQL');
    return ok('database', `PostgreSQL ${value ?? '?'} answered in ${ms} ms`);
  } catch (err) {
    return fail('database', `PostgreSQL: ${reason(err)}`, 'check DATABASE_URL and that PostgreSQL accepts connections from this host');
  }
}

/** Every migration in drizzle/ is recorded in drizzle.__drizzle_migrations (by hash), and nothing else is. */
async function checkMigrations(deps: Deps): Promise<DoctorCheck> {
  const name = 'migrations';
  try {
    const files = readMigrations();
    const { value: hashes } = await timed(() => appliedMigrationHashes(deps.db), 'PostgreSQL');
    const applied = new Set(hashes);
    const known = new Set(files.map((f) => f.hash));
    const missing = files.filter((f) => !applied.has(f.hash)).map((f) => f.tag);
    const unknown = [...applied].filter((h) => !known.has(h));
    if (missing.length) {
      return fail(
        name,
        `${missing.length} of ${files.length} not applied: ${missing.join(', ')}`,
        'run `pnpm db:migrate` with this DATABASE_URL, or restart the registry (it migrates at start-up)',
      );
    }
    if (unknown.length) {
      return fail(
        name,
        `the database has ${unknown.length} migration(s) this registry does not know (${unknown.map((h) => h.slice(0, 12)).join(', ')})`,
        'a newer registry migrated this database: run the same version on every replica',
      );
    }
    return ok(name, `all ${files.length} applied (last: ${files.at(-1)?.tag ?? 'none'})`);
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === '42P01') {
      return fail(
        name,
        'no migrations applied (drizzle.__drizzle_migrations does not exist)',
        'run `pnpm db:migrate` with this DATABASE_URL, or start the registry on it',
      );
    }
    return fail(name, `could not read the migration state: ${reason(err)}`, 'fix the database check first');
  }
}

async function checkBucket(deps: Deps): Promise<DoctorCheck> {
  const s3 = deps.config.s3;
  const name = s3 ? 'bucket' : 'store-directory';
  try {
    await timed(() => deps.store.driver.check(), 'the object store');
    return ok(name, s3 ? `bucket ${s3.bucket} exists at ${s3.endpoint}` : 'the file store directory is writable');
  } catch (err) {
    const hint = s3
      ? `check S3_ENDPOINT and S3_BUCKET; a missing bucket is created when the registry starts (or: mc mb <alias>/${s3.bucket})`
      : 'check that SWARM_DATA_DIR/store exists and is writable by the registry';
    return fail(name, reason(err), hint);
  }
}

/**
 * Stores a small probe object, reads it back, downloads it through a URL signed for the
 * downloaders' address (S3_PUBLIC_ENDPOINT, or the registry's /store route), and deletes
 * it again whatever happened. Two lines: the store itself, and the public download.
 */
async function checkRoundTrip(deps: Deps): Promise<[DoctorCheck, DoctorCheck]> {
  const { driver } = deps.store;
  const s3 = deps.config.s3;
  const key = `${DOCTOR_PREFIX}probe-${randomBytes(8).toString('hex')}`;
  const payload = `swarm doctor probe ${new Date().toISOString()}`;
  const storeName = 'store-roundtrip';
  const publicName = s3 ? 'presigned-get' : 'signed-download';
  const via = s3 ? `S3_PUBLIC_ENDPOINT (${s3.publicEndpoint})` : `the registry's /store route at ${deps.publicUrl()}`;
  const permissions = s3
    ? "the registry's key needs s3:PutObject, s3:GetObject and s3:DeleteObject on the bucket (docs/deploy.md)"
    : 'check that SWARM_DATA_DIR/store is writable by the registry';
  let stored = false;
  let problem: string | undefined;
  const work = (async () => {
    await driver.put(key, Readable.from([Buffer.from(payload)]));
    stored = true;
    const back = await text(await driver.get(key));
    if (back !== payload) throw new Error('read back different bytes than were written');
  })();
  try {
    await timed(() => work, 'the object store');
  } catch (err) {
    problem = `${stored ? 'get' : 'put'} of ${key}: ${reason(err)}`;
    // A put that timed out may still land: remove the probe then too.
    if (!stored)
      void work
        .catch(() => {})
        .then(async () => {
          if (stored) await driver.delete(key).catch(() => {});
        });
  }
  // checkDownload reports its own failures; it never throws.
  const download = problem
    ? fail(publicName, 'not tried: the probe object could not be stored and read', 'fix the store round trip first')
    : await checkDownload(deps, key, payload, publicName, via);
  if (stored) {
    await timed(() => driver.delete(key), 'the object store').catch((err: unknown) => {
      problem ??= `delete of ${key}: ${reason(err)}`;
    });
  }
  const store = problem
    ? fail(storeName, problem, permissions)
    : ok(storeName, `put, get and delete of a probe object under ${DOCTOR_PREFIX} work`);
  return [store, download];
}

async function checkDownload(deps: Deps, key: string, payload: string, name: string, via: string): Promise<DoctorCheck> {
  const hint = `VMs download through ${via}: make it an address of the store that answers. This check fetched it from the registry's host; a VM's network may still differ`;
  try {
    const url = await deps.store.driver.presignGet(key, 60);
    const { value: res } = await timed(() => fetch(url, { signal: AbortSignal.timeout(DOCTOR_CHECK_TIMEOUT_MS) }), via);
    const body = await res.text();
    if (res.status !== 200) return fail(name, `GET through ${via} answered ${res.status}`, hint);
    if (body !== payload) return fail(name, `GET through ${via} returned different bytes`, hint);
    return ok(name, `download through ${via} works from the registry's host (not checked from a VM)`);
  } catch (err) {
    return fail(name, `GET through ${via}: ${reason((err as { cause?: unknown }).cause ?? err)}`, hint);
  }
}

/** How far the store's clock (its Date header) is from ours, in ms; positive: the store is ahead. */
export function classifyClockSkew(skewMs: number): Omit<DoctorCheck, 'name'> {
  const abs = Math.abs(skewMs);
  const detail = `the store's clock is ${(skewMs / 1000).toFixed(1)} s ${skewMs >= 0 ? 'ahead of' : 'behind'} the registry's (±1 s)`;
  if (abs > CLOCK_SKEW_FAIL_MS)
    return {
      status: 'fail',
      detail,
      hint: 'SigV4 refuses requests more than 15 minutes off: sync both clocks (chrony, systemd-timesyncd)',
    };
  if (abs > CLOCK_SKEW_WARN_MS)
    return {
      status: 'warn',
      detail,
      hint: 'presigned URLs expire early or late by this much: sync both clocks (chrony, systemd-timesyncd)',
    };
  return { status: 'ok', detail };
}

/** The Date header of a signed request to S3_ENDPOINT against our clock at the request's midpoint. */
async function checkClock(deps: Deps): Promise<DoctorCheck> {
  const name = 'clock-skew';
  const s3 = deps.config.s3;
  if (!s3) return ok(name, "the file store uses the registry's own clock");
  try {
    // Any signed request will do (a missing key answers 404 with a Date header, as does a skew refusal).
    const url = await deps.store.driver.presignGet(`${DOCTOR_PREFIX}clock`, 60, s3.endpoint);
    const before = Date.now();
    const { value: res } = await timed(
      () => fetch(url, { method: 'GET', signal: AbortSignal.timeout(DOCTOR_CHECK_TIMEOUT_MS) }),
      'S3_ENDPOINT',
    );
    const after = Date.now();
    await res.body?.cancel();
    const date = Date.parse(res.headers.get('date') ?? '');
    if (Number.isNaN(date))
      return { name, status: 'warn', detail: 'the store sent no Date header', hint: 'compare the clocks by hand (date -u on both hosts)' };
    // Date has whole seconds: the store's time lies in [date, date + 1 s).
    return { name, ...classifyClockSkew(date + 500 - (before + after) / 2) };
  } catch (err) {
    return fail(
      name,
      `S3_ENDPOINT (${s3.endpoint}): ${reason((err as { cause?: unknown }).cause ?? err)}`,
      'check S3_ENDPOINT and that the store is running',
    );
  }
}
