/**
 * The agent's credentials and what it may report, at the registry (issue #12 §1). The
 * metadata's agent token is a one-time bootstrap credential: traded once for a session,
 * dead afterwards or when it expires; every credential dies when the execution ends,
 * right after the final report is recorded. Events are capped per event and per
 * execution (the final report excepted), and read in pages of at most 1,000.
 * Each refusal changes nothing in the database.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SwarmClient, SwarmError } from '../packages/sdk/src/index.js';
import { ConfigError, loadConfig } from '../packages/server/src/config.js';
import { reapExecutions } from '../packages/server/src/services/executions.js';
import { bundleOf } from './support/bundles.js';
import { swarmInProcess } from './support/cli.js';
import { startTestRegistry } from './support/registry.js';

type EventType = Parameters<SwarmClient['trpc']['executions']['appendEvent']['mutate']>[0]['type'];

let work: string;
beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-agent-credentials-'));
});
afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** A registry with workflow acme/job active, and helpers that act as orchestrator, agent and workload. */
async function registryWithWorkflow(name: string, env: Record<string, string> = {}) {
  const reg = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn', ...env } });
  const sql = postgres(reg.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
  const admin = reg.client();
  await admin.call(() => admin.trpc.tenants.create.mutate({ slug: 'acme' }));
  await admin.call(() => admin.trpc.workflows.create.mutate({ tenant: 'acme', name: 'job' }));
  await admin.uploadBundle(await bundleOf(path.join(work, name), { 'main.sh': 'echo hi\n' }), { workflow: 'acme/job', activate: true });

  const spawn = async (input: { bootstrapTokenTtlSeconds?: number } = {}) => {
    const s = await admin.call(() => admin.trpc.executions.spawn.mutate({ workflow: 'acme/job', ...input }));
    return { id: s.execution.id, bootstrap: s.metadata.execution!.agentToken };
  };
  const exchange = (executionId: string, token: string) => {
    const c = reg.client(token);
    return c.call(() => c.trpc.executions.exchangeToken.mutate({ executionId }));
  };
  const append = (executionId: string, token: string, seq: number, type: EventType, data: Record<string, unknown> = {}) => {
    const c = reg.client(token);
    return c.call(() => c.trpc.executions.appendEvent.mutate({ executionId, seq, type, data }));
  };
  const refused = (p: Promise<unknown>) => p.then(() => ({ code: 'ACCEPTED' }) as unknown as SwarmError).catch((e: SwarmError) => e);
  /** Everything about the execution that a refusal must leave as it was. */
  const state = async (id: string) => {
    const [row] = await sql`
      select to_jsonb(e)::text as execution,
             (select coalesce(string_agg(to_jsonb(v)::text, ',' order by seq), '') from execution_events v where v.execution_id = e.id) as events
      from executions e where e.id = ${id}`;
    return row as { execution: string; events: string };
  };
  const events = (id: string) => admin.call(() => admin.trpc.executions.events.query({ id }));
  const execution = (id: string) => admin.call(() => admin.trpc.executions.get.query({ id }));
  return { reg, sql, admin, spawn, exchange, append, refused, state, events, execution };
}

describe('the bootstrap agent token', () => {
  let r: Awaited<ReturnType<typeof registryWithWorkflow>>;
  beforeAll(async () => {
    r = await registryWithWorkflow('bootstrap');
  }, 120_000);
  afterAll(async () => {
    await r?.sql.end();
    await r?.reg.close();
  });

  it('is traded once for a session that reports; stored are hashes only, and the bootstrap hash is gone', async () => {
    const { id, bootstrap } = await r.spawn();
    const { sessionToken } = await r.exchange(id, bootstrap);
    expect(sessionToken).toMatch(/^sws_[\w-]{43}$/);
    expect(await r.append(id, sessionToken, 0, 'metadata_loaded')).toEqual({ accepted: true });
    const row = await r.state(id);
    expect(row.execution).not.toContain(sessionToken);
    expect(row.execution).not.toContain(bootstrap);
    const [hashes] = await r.sql`select agent_token_hash, agent_session_hash from executions where id = ${id}`;
    expect(hashes).toMatchObject({ agent_token_hash: null, agent_session_hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('is refused after the exchange: a second exchange and any event answer UNAUTHORIZED, and change nothing', async () => {
    const { id, bootstrap } = await r.spawn();
    await r.exchange(id, bootstrap);
    const before = await r.state(id);
    expect(await r.refused(r.exchange(id, bootstrap))).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(await r.refused(r.append(id, bootstrap, 0, 'runtime_exited', { code: 0 }))).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(await r.state(id)).toEqual(before);
  });

  it('cannot report events before the exchange either: it only buys a session', async () => {
    const { id, bootstrap } = await r.spawn();
    const before = await r.state(id);
    const err = await r.refused(r.append(id, bootstrap, 0, 'runtime_exited', { code: 0 }));
    expect(err).toMatchObject({ code: 'UNAUTHORIZED', hint: expect.stringContaining('exchangeToken') });
    expect(await r.state(id)).toEqual(before);
    // Still good for its one use.
    await expect(r.exchange(id, bootstrap)).resolves.toMatchObject({ sessionToken: expect.any(String) });
  });

  it('gives one session to concurrent exchanges', async () => {
    const { id, bootstrap } = await r.spawn();
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => r.exchange(id, bootstrap)));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    for (const o of outcomes.filter((o) => o.status === 'rejected')) expect(o.reason).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('is not exchanged for another execution: NOT_FOUND, and it stays unspent', async () => {
    const a = await r.spawn();
    const b = await r.spawn();
    expect(await r.refused(r.exchange(b.id, a.bootstrap))).toMatchObject({ code: 'NOT_FOUND' });
    await expect(r.exchange(a.id, a.bootstrap)).resolves.toBeDefined();
  });

  it('expires SWARM_BOOTSTRAP_TOKEN_TTL_SECONDS (default 300) after the spawn, by the database clock', async () => {
    const { id } = await r.spawn();
    const [row] = await r.sql`select extract(epoch from agent_token_expires_at - created_at)::int as ttl from executions where id = ${id}`;
    expect(row!.ttl).toBe(300);
    const custom = await r.spawn({ bootstrapTokenTtlSeconds: 42 });
    const [c] =
      await r.sql`select extract(epoch from agent_token_expires_at - created_at)::int as ttl from executions where id = ${custom.id}`;
    expect(c!.ttl).toBe(42);
  });

  it('is refused once expired (a spawn asking for 1 second), and changes nothing', async () => {
    const { id, bootstrap } = await r.spawn({ bootstrapTokenTtlSeconds: 1 });
    // Wait for the database's clock (bounded), not for a guess of ours.
    for (let i = 0; i < 50; i++) {
      const [row] = await r.sql`select now() > agent_token_expires_at as expired from executions where id = ${id}`;
      if (row!.expired) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const before = await r.state(id);
    expect(await r.refused(r.exchange(id, bootstrap))).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(await r.state(id)).toEqual(before);
  });

  for (const [label, ttl] of [
    ['zero', 0],
    ['over an hour', 3601],
    ['a fraction', 1.5],
    ['negative', -5],
  ] as const) {
    it(`refuses a spawn whose bootstrapTokenTtlSeconds is ${label} (BAD_REQUEST, no execution)`, async () => {
      const [{ n: before }] = (await r.sql`select count(*)::int as n from executions`) as unknown as [{ n: number }];
      expect(await r.refused(r.spawn({ bootstrapTokenTtlSeconds: ttl }))).toMatchObject({ code: 'BAD_REQUEST' });
      const [{ n: after }] = (await r.sql`select count(*)::int as n from executions`) as unknown as [{ n: number }];
      expect(after).toBe(before);
    });
  }

  it('makes the forged result impossible: the workload, holding the metadata token, cannot post runtime_exited', async () => {
    const { id, bootstrap } = await r.spawn();
    const { sessionToken } = await r.exchange(id, bootstrap); // the agent, before the workload starts
    await r.append(id, sessionToken, 0, 'metadata_loaded');
    await r.append(id, sessionToken, 1, 'runtime_started', { pid: 42 });
    // The attack: the workload read the metadata token and posts success at the next seq.
    expect(await r.refused(r.append(id, bootstrap, 2, 'runtime_exited', { code: 0 }))).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(await r.refused(r.exchange(id, bootstrap))).toMatchObject({ code: 'UNAUTHORIZED' });
    // The agent's real report is not a "duplicate seq": it is recorded.
    expect(await r.append(id, sessionToken, 2, 'runtime_exited', { code: 1 })).toEqual({ accepted: true });
    expect(await r.execution(id)).toMatchObject({ status: 'failed', exitCode: 1, failureReason: 'nonzero_exit' });
  });
});

describe('revocation at the end of an execution', () => {
  let r: Awaited<ReturnType<typeof registryWithWorkflow>>;
  beforeAll(async () => {
    r = await registryWithWorkflow('revocation');
  }, 120_000);
  afterAll(async () => {
    await r?.sql.end();
    await r?.reg.close();
  });

  for (const final of [
    { type: 'runtime_exited', data: { code: 0 }, status: 'succeeded' },
    { type: 'failed', data: { reason: 'fetch_failed' }, status: 'failed' },
  ] as const) {
    it(`accepts the final ${final.type} and revokes the session in that call; a replayed failed event is refused and events/watch show nothing new`, async () => {
      const { id, bootstrap } = await r.spawn();
      const { sessionToken } = await r.exchange(id, bootstrap);
      await r.append(id, sessionToken, 0, 'metadata_loaded');
      expect(await r.append(id, sessionToken, 1, final.type, final.data)).toEqual({ accepted: true });
      expect(await r.execution(id)).toMatchObject({ status: final.status });
      const [hashes] = await r.sql`select agent_token_hash, agent_session_hash from executions where id = ${id}`;
      expect(hashes).toEqual({ agent_token_hash: null, agent_session_hash: null });

      const before = await r.state(id);
      // The replay: a `failed` event after the end, at the next seq and at a far one.
      for (const seq of [2, 99]) {
        expect(await r.refused(r.append(id, sessionToken, seq, 'failed', { reason: 'forged' }))).toMatchObject({ code: 'UNAUTHORIZED' });
      }
      // A retry of the final report itself (its answer lost) is refused too; it was recorded.
      expect(await r.refused(r.append(id, sessionToken, 1, final.type, final.data))).toMatchObject({ code: 'UNAUTHORIZED' });
      expect(await r.state(id)).toEqual(before);
      expect((await r.events(id)).map((e) => e.seq)).toEqual([0, 1]);
      const watched: number[] = [];
      await r.admin.watchExecution(id, (e) => watched.push(e.seq));
      expect(watched).toEqual([0, 1]);
    });
  }

  it('revokes the credentials of executions the reaper marks abandoned', async () => {
    const { id, bootstrap } = await r.spawn();
    const other = await r.spawn();
    const { sessionToken } = await r.exchange(id, bootstrap);
    expect((await reapExecutions(r.reg.deps, 0)).abandoned).toBeGreaterThanOrEqual(2);
    expect(await r.execution(id)).toMatchObject({ status: 'failed', failureReason: 'abandoned' });
    expect(await r.refused(r.append(id, sessionToken, 0, 'metadata_loaded'))).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(await r.refused(r.exchange(other.id, other.bootstrap))).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('cannot end an execution without revoking it: the database refuses a terminal status with a live credential', async () => {
    const { id } = await r.spawn();
    await expect(r.sql`update executions set status = 'succeeded' where id = ${id}`).rejects.toThrow(/executions_ended_revoked/);
  });
});

describe('event caps', () => {
  const LIMITS = { data: 1024, events: 5, bytes: 2048 };
  let r: Awaited<ReturnType<typeof registryWithWorkflow>>;
  let defaults: Awaited<ReturnType<typeof registryWithWorkflow>>;
  beforeAll(async () => {
    [r, defaults] = await Promise.all([
      registryWithWorkflow('caps', {
        SWARM_MAX_EVENT_DATA_BYTES: String(LIMITS.data),
        SWARM_MAX_EVENTS_PER_EXECUTION: String(LIMITS.events),
        SWARM_MAX_EVENT_BYTES_PER_EXECUTION: String(LIMITS.bytes),
      }),
      registryWithWorkflow('caps-defaults'),
    ]);
  }, 120_000);
  afterAll(async () => {
    await r?.sql.end();
    await r?.reg.close();
    await defaults?.sql.end();
    await defaults?.reg.close();
  });

  const session = async (reg = r) => {
    const { id, bootstrap } = await reg.spawn();
    return { id, token: (await reg.exchange(id, bootstrap)).sessionToken };
  };
  const blob = (bytes: number) => ({ blob: 'x'.repeat(bytes - '{"blob":""}'.length) });

  it('refuses event data over 16 KiB by default with PAYLOAD_TOO_LARGE (the issue: ~1 MB events), changing nothing', async () => {
    const { id, token } = await session(defaults);
    expect(await defaults.append(id, token, 0, 'unpacked', blob(16 * 1024))).toEqual({ accepted: true });
    const before = await defaults.state(id);
    for (const size of [16 * 1024 + 1, 1000 * 1000]) {
      const err = await defaults.refused(defaults.append(id, token, 1, 'unpacked', blob(size)));
      expect(err, `${size} bytes`).toMatchObject({
        code: 'PAYLOAD_TOO_LARGE',
        hint: expect.stringContaining('SWARM_MAX_EVENT_DATA_BYTES'),
      });
    }
    expect(await defaults.state(id)).toEqual(before);
  });

  it('caps one event at SWARM_MAX_EVENT_DATA_BYTES, counted as JSON text in bytes (multi-byte characters count fully)', async () => {
    const { id, token } = await session();
    const before = await r.state(id);
    const wide = { s: 'é'.repeat(LIMITS.data / 2) }; // 512 characters, 1024 bytes in UTF-8, more as JSON
    expect(await r.refused(r.append(id, token, 0, 'unpacked', wide))).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    expect(await r.state(id)).toEqual(before);
  });

  it('refuses the event past SWARM_MAX_EVENTS_PER_EXECUTION with PRECONDITION_FAILED and a hint, changes nothing, and still takes the final report', async () => {
    const { id, token } = await session();
    for (let seq = 0; seq < LIMITS.events; seq++) expect(await r.append(id, token, seq, 'cache_miss')).toEqual({ accepted: true });
    const before = await r.state(id);
    const err = await r.refused(r.append(id, token, LIMITS.events, 'unpacked'));
    expect(err).toMatchObject({ code: 'PRECONDITION_FAILED', hint: expect.stringContaining('final report') });
    expect(await r.state(id)).toEqual(before);
    // A retry of an accepted event is still just a duplicate.
    expect(await r.append(id, token, 0, 'cache_miss')).toEqual({ accepted: false });
    expect(await r.append(id, token, LIMITS.events, 'runtime_exited', { code: 0 })).toEqual({ accepted: true });
    expect(await r.execution(id)).toMatchObject({ status: 'succeeded', exitCode: 0 });
  });

  it('refuses the event past SWARM_MAX_EVENT_BYTES_PER_EXECUTION, changes nothing, and still takes a failed report', async () => {
    const { id, token } = await session();
    expect(await r.append(id, token, 0, 'unpacked', blob(1000))).toEqual({ accepted: true });
    expect(await r.append(id, token, 1, 'unpacked', blob(1000))).toEqual({ accepted: true });
    const before = await r.state(id);
    expect(await r.refused(r.append(id, token, 2, 'unpacked', blob(100)))).toMatchObject({ code: 'PRECONDITION_FAILED' });
    expect(await r.state(id)).toEqual(before);
    expect(await r.append(id, token, 2, 'failed', { reason: 'internal', message: 'x'.repeat(900) })).toEqual({ accepted: true });
    expect(await r.execution(id)).toMatchObject({ status: 'failed', failureReason: 'internal' });
    const [row] = await r.sql`select event_count, event_bytes from executions where id = ${id}`;
    expect(row).toMatchObject({ event_count: 3 });
  });

  for (const [variable, value] of [
    ['SWARM_MAX_EVENT_DATA_BYTES', '0'],
    ['SWARM_MAX_EVENT_DATA_BYTES', '2000000'],
    ['SWARM_MAX_EVENTS_PER_EXECUTION', '0'],
    ['SWARM_MAX_EVENT_BYTES_PER_EXECUTION', 'lots'],
    ['SWARM_BOOTSTRAP_TOKEN_TTL_SECONDS', '0'],
    ['SWARM_BOOTSTRAP_TOKEN_TTL_SECONDS', '86400'],
  ] as const) {
    it(`refuses ${variable}=${value} at start-up`, () => {
      expect(() => loadConfig({ [variable]: value })).toThrow(ConfigError);
      expect(() => loadConfig({ [variable]: value })).toThrow(variable);
    });
  }
});

describe('event pages', () => {
  const TOTAL = 2500;
  let r: Awaited<ReturnType<typeof registryWithWorkflow>>;
  let id: string;
  beforeAll(async () => {
    r = await registryWithWorkflow('pages');
    ({ id } = await r.spawn());
    // More history than one page holds, written straight to the table (appending is tested above).
    await r.sql`insert into execution_events (execution_id, seq, type, data)
      select ${id}::uuid, g, case when g = ${TOTAL - 1} then 'runtime_exited' else 'unpacked' end,
             case when g = ${TOTAL - 1} then '{"code":0}'::jsonb else jsonb_build_object('n', g) end
      from generate_series(0, ${TOTAL - 1}) g`;
    await r.sql`update executions set status = 'succeeded', exit_code = 0, agent_token_hash = null where id = ${id}`;
  }, 120_000);
  afterAll(async () => {
    await r?.sql.end();
    await r?.reg.close();
  });

  const seqs = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

  it('answers at most 1,000 events without a limit, and pages with afterSeq + limit', async () => {
    expect((await r.events(id)).map((e) => e.seq)).toEqual(seqs(0, 1000));
    const q = (afterSeq: number, limit: number) => r.admin.call(() => r.admin.trpc.executions.events.query({ id, afterSeq, limit }));
    expect((await q(999, 1000)).map((e) => e.seq)).toEqual(seqs(1000, 2000));
    expect((await q(1999, 1000)).map((e) => e.seq)).toEqual(seqs(2000, TOTAL));
    expect((await q(10, 3)).map((e) => e.seq)).toEqual([11, 12, 13]);
    expect(await q(TOTAL - 1, 10)).toEqual([]);
  });

  for (const [label, limit] of [
    ['over 1,000', 1001],
    ['zero', 0],
    ['a fraction', 2.5],
  ] as const) {
    it(`refuses a limit ${label} with BAD_REQUEST`, async () => {
      const err = await r.refused(r.admin.call(() => r.admin.trpc.executions.events.query({ id, limit })));
      expect(err).toMatchObject({ code: 'BAD_REQUEST' });
    });
  }

  it('lets the SDK iterate every event, a page at a time', async () => {
    const got: number[] = [];
    for await (const e of r.admin.executionEvents(id)) got.push(e.seq);
    expect(got).toEqual(seqs(0, TOTAL));
    const after: number[] = [];
    for await (const e of r.admin.executionEvents(id, { afterSeq: 1995 })) after.push(e.seq);
    expect(after).toEqual(seqs(1996, TOTAL));
  });

  it('replays the whole history through watch, in order, and ends', async () => {
    const watched: number[] = [];
    await r.admin.watchExecution(id, (e) => watched.push(e.seq));
    expect(watched).toEqual(seqs(0, TOTAL));
  });

  it('prints every event with swarm logs, with and without -f', async () => {
    const args = ['--url', r.reg.url, '--token', r.reg.adminToken];
    const plain = await swarmInProcess([...args, 'logs', id]);
    expect(plain.code, plain.stderr).toBe(0);
    const lines = plain.stdout.trim().split('\n');
    expect(lines).toHaveLength(TOTAL);
    expect(lines[1500]).toContain('#1500 unpacked');
    const json = await swarmInProcess([...args, '--json', 'logs', id]);
    // One JSON event per line (#16).
    const ndjson = (text: string) =>
      text
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(ndjson(json.stdout)).toEqual(seqs(0, TOTAL));
    const followed = await swarmInProcess([...args, '--json', 'logs', id, '-f']);
    expect(followed.code, followed.stderr).toBe(0);
    expect(ndjson(followed.stdout)).toEqual(seqs(0, TOTAL));
  });
});
