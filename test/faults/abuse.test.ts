/**
 * Abuse of the live registry: every tRPC procedure (enumerated from the router itself)
 * and every REST route called with no, malformed, revoked, expired and wrong tokens;
 * arbitrary inputs from fast-check; framing attacks over raw sockets; and a secret
 * that must appear nowhere after a real spawn. Each case checks what the caller sees
 * and that the database did not change.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnWorkflow } from '../../packages/sdk/src/orchestrator/index.js';
import { createAppRouter } from '../../packages/server/src/trpc/router.js';
import { bundleOf } from '../support/bundles.js';
import { rawRequest } from '../support/raw-http.js';
import { type TestRegistry, bundleBytes, sha256, startTestRegistry } from '../support/registry.js';

const agentPath = path.resolve(import.meta.dirname, '../../packages/boot-agent/dist/boot-agent.mjs');
const SECRET = `abuse-s3cr3t-${Date.now()}-must-not-leak`;

type ProcType = 'query' | 'mutation' | 'subscription';
/** For SSE: `sse` is set, `body.error` is the streamed error, `sseData` says whether any data event came. */
type Reply = { status: number; text: string; body: any; sse: boolean; sseData: boolean };

let reg: TestRegistry;
let sql: postgres.Sql;
let port: number;
let work: string;
/** Every procedure of the router, by dotted path. */
let procedures: Map<string, ProcType>;

// Resources the matrix aims at (all in tenant "acme").
let bundleHash: string;
let executionA: string; // its agent token is expired in beforeAll
let expiredAgentToken: string;
let otherAgentToken: string; // execution B's (live) agent session
let spentBootstrapToken: string; // execution B's bootstrap token, exchanged for that session
let revokedToken: string;
let betaToken: string; // tenant token of another tenant
let orchestratorTokenId: string;

/** Calls one tRPC procedure over HTTP the way the tRPC client does (no batching). */
async function call(pathName: string, type: ProcType, input: unknown, authorization: string | null): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (authorization !== null) headers.authorization = authorization;
  const json = input === undefined ? undefined : JSON.stringify(input);
  let res: Response;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 10_000);
  try {
    if (type === 'mutation') {
      headers['content-type'] = 'application/json';
      res = await fetch(`${reg.url}/trpc/${pathName}`, { method: 'POST', headers, body: json ?? '', signal: ac.signal });
    } else {
      if (type === 'subscription') headers.accept = 'text/event-stream';
      const qs = json === undefined ? '' : `?input=${encodeURIComponent(json)}`;
      res = await fetch(`${reg.url}/trpc/${pathName}${qs}`, { headers, signal: ac.signal });
    }
    let text: string;
    if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
      // A subscription that was accepted: read what is there, then hang up.
      // tRPC streams subscriptions as SSE: a refusal is a `serialized-error` event after `connected`.
      const reader = res.body!.getReader();
      text = '';
      const deadline = Date.now() + 1500;
      while (Date.now() < deadline && !text.includes('serialized-error')) {
        const next = await Promise.race([
          reader.read(),
          new Promise<{ value?: undefined; done?: boolean }>((r) => setTimeout(() => r({}), 300)),
        ]);
        if (next.value) text += Buffer.from(next.value).toString();
        if (next.done) break;
      }
      await reader.cancel().catch(() => {});
      const m = /event: serialized-error\ndata: (.*)\n/.exec(text);
      const events = text.replace(/event: connected\ndata: .*\n/, '').replace(/event: serialized-error\ndata: .*\n/, '');
      return {
        status: res.status,
        text,
        body: m ? { error: JSON.parse(m[1]!) } : undefined,
        sse: true,
        sseData: /^(data|id):/m.test(events),
      };
    } else {
      text = await res.text();
    }
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status: res.status, text, body, sse: false, sseData: false };
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

const bearer = (token: string) => `Bearer ${token}`;

/**
 * One fingerprint of every row of every table in schema public: equal before and after
 * means nothing changed.
 */
let fingerprintQuery: string;
async function fingerprint(): Promise<string> {
  const [row] = await sql.unsafe(fingerprintQuery);
  return row!.f as string;
}

async function dumpAllTables(): Promise<string> {
  const tables =
    await sql`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`;
  const parts: string[] = [];
  for (const { table_name } of tables) {
    const rows = await sql.unsafe(`select to_jsonb(t)::text as j from "${table_name}" t`);
    parts.push(`${table_name}: ${rows.map((r) => r.j).join('\n')}`);
  }
  return parts.join('\n');
}

/** A valid input for each procedure, aimed at tenant acme's resources. */
function sampleInputs(): Record<string, unknown> {
  return {
    'tenants.create': { slug: 'matrix-new' },
    'tenants.get': { tenant: 'acme' },
    'tenants.list': undefined,
    'workflows.create': { tenant: 'acme', name: 'matrix-new' },
    'workflows.get': { workflow: 'acme/job' },
    'workflows.list': { tenant: 'acme' },
    'workflows.versions': { workflow: 'acme/job' },
    'workflows.set': { workflow: 'acme/job', timeoutSeconds: 60 },
    'bundles.get': { hash: bundleHash },
    'bundles.exists': { hash: bundleHash },
    'versions.register': { workflow: 'acme/job', bundleHash, message: 'matrix' },
    'versions.activate': { workflow: 'acme/job', version: 1 },
    'versions.active': { workflow: 'acme/job' },
    'tokens.create': { scope: 'admin', name: 'matrix' },
    'tokens.list': undefined,
    'tokens.revoke': { id: orchestratorTokenId },
    'executions.spawn': { workflow: 'acme/job', secrets: { API_KEY: 'x' } },
    // items, not count: a fuzzed count (a small integer) would be valid; a fuzzed items list is not.
    'executions.spawnMany': { workflow: 'acme/job', items: [{ routingKey: 'matrix' }], secrets: { API_KEY: 'x' } },
    'executions.exchangeToken': { executionId: executionA },
    'executions.appendEvent': { executionId: executionA, seq: 0, type: 'metadata_loaded', data: {} },
    'executions.heartbeat': { executionId: executionA },
    'executions.cancel': { id: executionA },
    'executions.get': { id: executionA },
    'executions.list': { workflow: 'acme/job' },
    'executions.events': { id: executionA },
    'executions.watch': { id: executionA },
    'system.doctor': undefined,
    'releases.state': { workflow: 'acme/job' },
    'releases.history': { workflow: 'acme/job' },
    'releases.diff': { workflow: 'acme/job', from: 1, to: 1 },
    'releases.rollback': { workflow: 'acme/job', to: 1 },
    'releases.setCanary': { workflow: 'acme/job', version: 1, weight: 10 },
    'releases.clearCanary': { workflow: 'acme/job' },
    'releases.promote': { workflow: 'acme/job' },
    'gc.run': { dryRun: true, keep: 1 },
    'keys.add': { tenant: 'acme', delegation: { payload: 'AAAA', signature: 'AAAA', rootKeyId: 'a'.repeat(64) } },
    'keys.list': { tenant: 'acme' },
    'keys.revoke': { tenant: 'acme', keyId: 'a'.repeat(64) },
    'keys.policy': { tenant: 'acme' },
    'keys.setPolicy': { tenant: 'acme', signatures: 'off' },
    'keys.sign': { workflow: 'acme/job', version: 1, statement: 'AAAA', signature: 'AAAA', keyId: 'a'.repeat(64) },
  };
}

/** The only procedures agent tokens may call. Everything else needs an API token. */
const AGENT_PROCEDURES = new Set(['executions.exchangeToken', 'executions.appendEvent', 'executions.heartbeat']);

/** What a boot agent does first: its bootstrap token (from the metadata) for a session token. */
async function exchange(executionId: string, bootstrapToken: string): Promise<string> {
  const r = await call('executions.exchangeToken', 'mutation', { executionId }, bearer(bootstrapToken));
  expect(r.status, r.text).toBe(200);
  return r.body.result.data.sessionToken;
}

beforeAll(async () => {
  const build = promisify(execFile)('pnpm', ['--filter', '@swarm/boot-agent', 'run', 'build'], { timeout: 120_000 });
  // Heartbeats far apart: the reaper must not end this file's executions as lost while it compares fingerprints.
  reg = await startTestRegistry({ storage: 's3', env: { SWARM_HEARTBEAT_SECONDS: '300' } });
  port = Number(new URL(reg.url).port);
  sql = postgres(reg.deps.config.databaseUrl!, { max: 2, onnotice: () => {} });
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-abuse-'));

  const tables =
    await sql`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`;
  expect(tables.length).toBeGreaterThan(3);
  fingerprintQuery = `select md5(concat_ws('|', ${tables
    .map((t) => `(select coalesce(string_agg(to_jsonb(x)::text, ',' order by to_jsonb(x)::text), '') from "${t.table_name}" x)`)
    .join(', ')})) as f`;

  procedures = new Map(
    Object.entries((createAppRouter(reg.deps) as any)._def.procedures as Record<string, { _def: { type: ProcType } }>).map(([k, v]) => [
      k,
      v._def.type,
    ]),
  );

  const c = reg.client();
  await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
  await c.call(() => c.trpc.tenants.create.mutate({ slug: 'beta' }));
  await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'job' }));
  await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'beta', name: 'job' }));
  // A real bundle: releases.diff lists its files.
  const bytes = await fs.readFile(await bundleOf(path.join(work, 'abuse-bundle'), { 'main.sh': 'echo abuse\n' }));
  bundleHash = sha256(bytes);
  const up = await reg.fetch('/internal/bundles?workflow=acme%2Fjob&activate=true', {
    method: 'POST',
    body: bytes,
    headers: { 'content-type': 'application/gzip' },
  });
  expect(up.status, await up.clone().text()).toBe(201);

  const a = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/job' }));
  const b = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/job' }));
  executionA = a.execution.id;
  expiredAgentToken = a.metadata.execution!.agentToken;
  spentBootstrapToken = b.metadata.execution!.agentToken;
  otherAgentToken = await exchange(b.execution.id, spentBootstrapToken);
  await sql`update executions set agent_token_expires_at = now() - interval '1 minute' where id = ${executionA}`;

  const revoked = await c.call(() => c.trpc.tokens.create.mutate({ scope: 'admin', name: 'to-revoke' }));
  await c.call(() => c.trpc.tokens.revoke.mutate({ id: revoked.id }));
  revokedToken = revoked.token;
  betaToken = (await c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:beta', name: 'beta' }))).token;
  orchestratorTokenId = (await c.call(() => c.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'orch' }))).id;
  await build;
}, 180_000);

afterAll(async () => {
  await sql?.end();
  await reg?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** The error a denied call must show: the status, the tRPC code, and no internals. */
function expectDenied(r: Reply, label: string, allowed: number[]) {
  const what = `${label}: ${r.status} ${r.text.slice(0, 300)}`;
  if (r.sse) {
    // SSE answers 200 before the procedure runs; the refusal is the one event, with no data.
    expect(r.status, what).toBe(200);
    expect(r.sseData, what).toBe(false);
    expect(allowed, what).toContain(r.body?.error?.data?.httpStatus);
  } else {
    expect(allowed, what).toContain(r.status);
    expect(r.body?.error?.data?.httpStatus, what).toBe(r.status);
  }
  expect(r.body?.error?.data?.code, what).toMatch(/^(UNAUTHORIZED|FORBIDDEN|NOT_FOUND)$/);
  expect(r.text, label).not.toMatch(/node_modules|\/work\/|\.ts:\d+|\bat \S+ \(/);
}

describe('auth matrix over every tRPC procedure', () => {
  it('knows a valid input for every procedure of the router, and each works with the right token', async () => {
    const samples = sampleInputs();
    expect(procedures.size).toBeGreaterThanOrEqual(21);
    // A procedure added to the router must be added here too (and so gets the whole matrix).
    expect([...procedures.keys()].sort()).toEqual(Object.keys(samples).sort());
    // Positive control: the inputs are valid, so the denials below are about the token.
    for (const [p, type] of procedures) {
      if (type === 'mutation') continue;
      const r = await call(p, type, samples[p], bearer(reg.adminToken));
      expect(r.status, `${p}: ${r.text.slice(0, 300)}`).toBe(200);
    }
  });

  const unauthorized: Array<[string, () => string | null]> = [
    ['no token', () => null],
    ['an empty bearer', () => 'Bearer '],
    ['a Basic header', () => `Basic ${Buffer.from(`admin:${reg.adminToken}`).toString('base64')}`],
    ['the admin token without "Bearer"', () => reg.adminToken],
    ['a lower-case scheme', () => `bearer ${reg.adminToken}`],
    ['a made-up swt_ token', () => 'Bearer swt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['a made-up swa_ token', () => 'Bearer swa_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['a 4 KiB token', () => `Bearer swt_${'x'.repeat(4096)}`],
    ['two tokens', () => `Bearer ${reg.adminToken}, Bearer ${reg.adminToken}`],
    ['SQL in the token', () => "Bearer swt_' or '1'='1"],
    ['a revoked API token', () => bearer(revokedToken)],
    ['an expired agent token', () => bearer(expiredAgentToken)],
    ['a spent (exchanged) bootstrap agent token', () => bearer(spentBootstrapToken)],
    ['a made-up sws_ session token', () => 'Bearer sws_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
  ];
  for (const [label, auth] of unauthorized) {
    it(`every procedure refuses ${label} with 401 UNAUTHORIZED and changes nothing`, async () => {
      const samples = sampleInputs();
      const before = await fingerprint();
      for (const [p, type] of procedures) {
        const r = await call(p, type, samples[p], auth());
        expectDenied(r, `${label} → ${p}`, [401]);
        expect(r.body.error.data.code).toBe('UNAUTHORIZED');
      }
      expect(await fingerprint()).toBe(before);
    });
  }

  it("refuses another execution's agent token: 401 on API procedures, 404 for the other execution's events; nothing changes", async () => {
    const samples = sampleInputs();
    const before = await fingerprint();
    for (const [p, type] of procedures) {
      const r = await call(p, type, samples[p], bearer(otherAgentToken));
      if (AGENT_PROCEDURES.has(p)) expectDenied(r, p, [403, 404]);
      else {
        expectDenied(r, p, [401]);
        expect(r.body.error.data.code).toBe('UNAUTHORIZED');
      }
    }
    expect(await fingerprint()).toBe(before);
  });

  it('refuses API tokens (even admin) on agent procedures with 401', async () => {
    const samples = sampleInputs();
    const before = await fingerprint();
    for (const p of AGENT_PROCEDURES) {
      for (const token of [reg.adminToken, betaToken]) {
        const r = await call(p, procedures.get(p)!, samples[p], bearer(token));
        expectDenied(r, p, [401]);
      }
    }
    expect(await fingerprint()).toBe(before);
  });

  it("refuses a tenant token on another tenant's resources with 403/404 and changes nothing", async () => {
    const samples = sampleInputs();
    const before = await fingerprint();
    for (const [p, type] of procedures) {
      const r = await call(p, type, samples[p], bearer(betaToken));
      if (p === 'tenants.list') {
        // Lists only its own tenant.
        expect(r.status).toBe(200);
        expect(r.body.result.data.map((t: { slug: string }) => t.slug)).toEqual(['beta']);
      } else if (p === 'bundles.exists') {
        // Indistinguishable from a bundle that does not exist.
        expect(r.status).toBe(200);
        expect(r.body.result.data).toBe(false);
      } else if (AGENT_PROCEDURES.has(p)) {
        expectDenied(r, p, [401]);
      } else {
        expectDenied(r, p, [403, 404]);
      }
    }
    expect(await fingerprint()).toBe(before);
  });

  it('lets an agent token append events to its own execution only', async () => {
    const c = reg.client();
    const own = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/job' }));
    const token = await exchange(own.execution.id, own.metadata.execution!.agentToken);
    const ok = await call(
      'executions.appendEvent',
      'mutation',
      { executionId: own.execution.id, seq: 0, type: 'metadata_loaded', data: {} },
      bearer(token),
    );
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.result.data).toEqual({ accepted: true });
  });
});

describe('auth on the REST routes', () => {
  const UNAUTHORIZED_BODY = { error: { code: 'UNAUTHORIZED', message: 'missing or invalid bearer token' } };
  const routes = (): Array<{ method: string; url: string; body?: Buffer }> => [
    { method: 'POST', url: '/internal/bundles?workflow=acme%2Fjob&activate=true', body: bundleBytes('rest-abuse') },
    { method: 'GET', url: `/internal/bundles/${bundleHash}` },
    { method: 'GET', url: '/internal/workflow/acme%2Fjob/active' },
    { method: 'GET', url: '/metrics' },
  ];
  const badTokens: Array<[string, () => string | null]> = [
    ['no token', () => null],
    ['a malformed header', () => 'Bearer '],
    ['a Basic header', () => `Basic ${Buffer.from('admin:admin').toString('base64')}`],
    ['a made-up token', () => 'Bearer swt_nope'],
    ['a revoked token', () => bearer(revokedToken)],
    ['an expired agent token', () => bearer(expiredAgentToken)],
    ['a live agent token', () => bearer(otherAgentToken)],
  ];
  for (const [label, auth] of badTokens) {
    it(`every REST route answers ${label} with 401 and the bare UNAUTHORIZED body`, async () => {
      const before = await fingerprint();
      for (const route of routes()) {
        const headers: Record<string, string> = {};
        const a = auth();
        if (a !== null) headers.authorization = a;
        if (route.body) headers['content-type'] = 'application/gzip';
        const res = await fetch(`${reg.url}${route.url}`, { method: route.method, headers, ...(route.body ? { body: route.body } : {}) });
        expect(res.status, `${route.method} ${route.url}`).toBe(401);
        expect(await res.json()).toEqual(UNAUTHORIZED_BODY);
      }
      expect(await fingerprint()).toBe(before);
    });
  }

  it('serves /healthz without a token', async () => {
    const res = await fetch(`${reg.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });
});

describe('input fuzzing (fast-check) as admin', () => {
  const RUNS = 100;
  let fuzzed = 0;
  afterAll(() => {
    console.log(`abuse.test: fuzzed ${fuzzed} inputs`);
  });

  /** Invalid values for one field: wrong types, hostile strings, NULs, oversized text. */
  const wrongValue = fc.oneof(
    fc.constant(null),
    fc.double(),
    // Integers no field accepts (fast-check favours small ones, which count/timeout/version fields take as valid).
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }).filter((n) => n < 0 || n > 2 ** 31),
    fc.boolean(),
    fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 5 }),
    fc.dictionary(fc.string(), fc.anything({ maxDepth: 2 }), { maxKeys: 5 }).map((d) => ({ ...d, '\u0000': null })),
    fc.string().map((s) => `${s}\u0000`),
    fc.constantFrom("'; drop table tenants; --\u0000", '../../etc/passwd\u0000', 'a'.repeat(5_000), '\u0000', '${jndi:x}\u0000'),
  );
  /** A valid input with one field replaced by something invalid. */
  const structuredWrong = (sample: unknown) => {
    if (!sample || typeof sample !== 'object') return fc.anything();
    const keys = Object.keys(sample);
    return fc.tuple(fc.constantFrom(...keys), wrongValue).map(([k, v]) => ({ ...(sample as object), [k]: v }));
  };

  it('never answers 5xx, a stack trace or a file path, always a JSON error with a code, and an error changes nothing', async () => {
    const samples = sampleInputs();
    const successes: string[] = [];
    for (const [p, type] of procedures) {
      const arb = fc.oneof(fc.anything(), structuredWrong(samples[p]), structuredWrong(samples[p]));
      await fc.assert(
        fc.asyncProperty(arb, async (input) => {
          fuzzed++;
          const before = await fingerprint();
          const r = await call(p, type, input, bearer(reg.adminToken));
          const status = r.sse && r.body ? r.body.error.data.httpStatus : r.status;
          const label = `${p} ${JSON.stringify(input)?.slice(0, 200)} → ${status} ${r.text.slice(0, 300)}`;
          expect(status, label).toBeLessThan(500);
          expect(r.text, label).not.toMatch(/node_modules|\/work\/|\.ts:\d+|\.m?js:\d+|\bat \S+ \(|"stack"/);
          if (status >= 400) {
            expect(r.body?.error?.data?.code, label).toMatch(/^[A-Z_]+$/);
            expect(await fingerprint(), `${label}: an error changed the database`).toBe(before);
          } else if ((await fingerprint()) !== before) {
            // Accepted and changed something: an input invalid by construction got through.
            successes.push(label);
          }
        }),
        { numRuns: RUNS, interruptAfterTimeLimit: 2_500 },
      );
    }
    // Invalid by construction: nothing may have changed (an idempotent re-register is a no-op).
    expect(successes, successes.join('\n')).toEqual([]);
    expect(fuzzed).toBeGreaterThan(procedures.size * 20);
  }, 120_000);

  it('fuzzes event data from a live agent token: never a 5xx', async () => {
    const c = reg.client();
    const own = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/job' }));
    const session = await exchange(own.execution.id, own.metadata.execution!.agentToken);
    let seq = 0;
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.string(), fc.anything(), { maxKeys: 5 }), async (data) => {
        fuzzed++;
        const r = await call(
          'executions.appendEvent',
          'mutation',
          { executionId: own.execution.id, seq: seq++, type: 'runtime_output', data },
          bearer(session),
        );
        const label = `${JSON.stringify(data).slice(0, 200)} → ${r.status} ${r.text.slice(0, 300)}`;
        expect(r.status, label).toBeLessThan(500);
        if (r.status >= 400) expect(r.body?.error?.data?.code, label).toMatch(/^[A-Z_]+$/);
      }),
      { numRuns: RUNS, interruptAfterTimeLimit: 10_000 },
    );
  }, 60_000);
});

describe('framing attacks over raw sockets', () => {
  const admin = () => `Authorization: Bearer ${reg.adminToken}\r\n`;
  const healthy = async () => {
    const res = await fetch(`${reg.url}/healthz`);
    expect(res.status).toBe(200);
  };

  it('refuses conflicting Content-Length and Transfer-Encoding with 400 and smuggles nothing through', async () => {
    const before = await fingerprint();
    const smuggled = `POST /trpc/tenants.create HTTP/1.1\r\nHost: 127.0.0.1\r\n${admin()}Content-Type: application/json\r\nContent-Length: 19\r\n\r\n{"slug":"smuggled"}`;
    const chunkedBody = `0\r\n\r\n${smuggled}`;
    for (const te of ['chunked', ' chunked', 'chunked, identity', 'identity, chunked']) {
      const payload =
        `POST /trpc/tenants.create HTTP/1.1\r\nHost: 127.0.0.1\r\n${admin()}Content-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(chunkedBody)}\r\nTransfer-Encoding:${te}\r\n\r\n${chunkedBody}`;
      const r = await rawRequest(port, payload);
      expect(r.statuses, `${te}: ${r.text.slice(0, 300)}`).toEqual([400]);
    }
    // Two Content-Length headers that disagree.
    const twoLengths = await rawRequest(
      port,
      `POST /trpc/tenants.create HTTP/1.1\r\nHost: 127.0.0.1\r\n${admin()}Content-Type: application/json\r\nContent-Length: 0\r\nContent-Length: 19\r\n\r\n{"slug":"smuggled"}`,
    );
    expect(twoLengths.statuses, twoLengths.text.slice(0, 300)).toEqual([400]);
    const r = await call('tenants.get', 'query', { tenant: 'smuggled' }, bearer(reg.adminToken));
    expect(r.status).toBe(404);
    expect(await fingerprint()).toBe(before);
    await healthy();
  });

  it('refuses a 100 KB header with 431', async () => {
    const before = await fingerprint();
    const r = await rawRequest(
      port,
      `POST /trpc/tenants.create HTTP/1.1\r\nHost: 127.0.0.1\r\n${admin()}Content-Type: application/json\r\nX-Padding: ${'a'.repeat(100 * 1024)}\r\nContent-Length: 15\r\n\r\n{"slug":"huge"}`,
    );
    expect(r.statuses, r.text.slice(0, 300)).toEqual([431]);
    expect(await fingerprint()).toBe(before);
    await healthy();
  });

  it('refuses a tRPC body over 1 MiB with 413', async () => {
    const before = await fingerprint();
    const body = JSON.stringify({ slug: 'too-big', pad: 'a'.repeat(1024 * 1024 + 100) });
    const r = await rawRequest(
      port,
      `POST /trpc/tenants.create HTTP/1.1\r\nHost: 127.0.0.1\r\n${admin()}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    expect(r.statuses, r.text.slice(0, 300)).toEqual([413]);
    // The same through fetch, chunked (no Content-Length up front).
    const streamed = await fetch(`${reg.url}/trpc/tenants.create`, {
      method: 'POST',
      headers: { authorization: bearer(reg.adminToken), 'content-type': 'application/json' },
      body: new Blob([body]).stream(),
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(await fingerprint()).toBe(before);
    await healthy();
  });

  it('refuses JSON nested 100,000 levels deep with 400/413 and stays healthy', async () => {
    const before = await fingerprint();
    const deep = 100_000;
    for (const body of [
      '['.repeat(deep),
      '['.repeat(deep) + ']'.repeat(deep),
      `{"slug":${'['.repeat(deep)}${']'.repeat(deep)}}`,
      `${'{"a":'.repeat(deep)}1${'}'.repeat(deep)}`,
    ]) {
      const r = await rawRequest(
        port,
        `POST /trpc/tenants.create HTTP/1.1\r\nHost: 127.0.0.1\r\n${admin()}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      expect(r.statuses.length, r.text.slice(0, 300)).toBe(1);
      expect([400, 413], r.text.slice(0, 300)).toContain(r.statuses[0]);
      expect(r.text).not.toMatch(/node_modules|\/work\/|\bat \S+ \(/);
    }
    // Deep input as a query (in the URL) too.
    const q = await call('tenants.get', 'query', JSON.parse('['.repeat(1000) + ']'.repeat(1000)), bearer(reg.adminToken));
    expect(q.status).toBe(400);
    expect(await fingerprint()).toBe(before);
    await healthy();
  });
});

describe('secrets', () => {
  it('after a full spawn with the process driver, the secret is in no table, log line or event', async () => {
    const admin = reg.client();
    await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'acme', name: 'secret-run' }));
    const file = await bundleOf(path.join(work, 'secret-run'), {
      'index.js': "console.log('has key=' + (process.env.API_KEY ? 'yes' : 'no'));\n",
      'swarm.json': '{"entrypoint":["node","index.js"]}',
    });
    await admin.uploadBundle(file, { workflow: 'acme/secret-run', activate: true });
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'secret-orchestrator' }));
    const out = await spawnWorkflow(reg.client(token), 'acme/secret-run', {
      agentPath,
      cacheDir: path.join(work, 'cache'),
      secrets: { API_KEY: SECRET },
    });
    expect(out.exitCode, out.output).toBe(0);
    expect(out.output).toContain('has key=yes');
    const events = await admin.call(() => admin.trpc.executions.events.query({ id: out.executionId }));
    expect(events.map((e) => e.type)).toContain('runtime_exited');

    const dump = await dumpAllTables();
    expect(dump).toContain(out.executionId); // the dump did see the execution
    expect(dump).not.toContain(SECRET);
    expect(reg.logs.length).toBeGreaterThan(0);
    expect(reg.logs.join('\n')).not.toContain(SECRET);
    expect(JSON.stringify(events)).not.toContain(SECRET);
    expect(out.output).not.toContain(SECRET);
  }, 60_000);
});
