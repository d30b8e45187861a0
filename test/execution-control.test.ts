/**
 * Executions users can watch and stop (#16), with the process driver against the real
 * registry: captured output (complete, in order, masked everywhere, capped, escaped),
 * cancel (pending, booting, running), timeouts, lost agents, the reaper's notes, and what
 * tenant tokens may do with their own executions.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecutionEvent } from '../packages/sdk/src/contract/index.js';
import type { SwarmError } from '../packages/sdk/src/index.js';
import { spawnWorkflow } from '../packages/sdk/src/orchestrator/index.js';
import { reapExecutions } from '../packages/server/src/services/executions.js';
import { bundleOf } from './support/bundles.js';
import { swarm, swarmInProcess } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

const agentPath = path.resolve(import.meta.dirname, '../packages/boot-agent/dist/boot-agent.mjs');
const SECRET = `tok-${Date.now()}-never-shown`;

type Lines = Array<{ stream: string; text: string; escaped?: boolean; cut?: boolean }>;
const outputLines = (events: ExecutionEvent[]): Lines => events.filter((e) => e.type === 'output').flatMap((e) => e.data.lines as Lines);

/** Node programs the workflows run (argv: the program text). */
const PROGRAMS = {
  chatty: `for (let i = 0; i < 10000; i++) process.stdout.write('line ' + i + '\\n');`,
  secret: `const s = process.env.API_KEY;
process.stdout.write('whole ' + s + '\\n');
process.stdout.write('split ' + s.slice(0, 7));
setTimeout(() => { process.stdout.write(s.slice(7) + ' end\\n'); process.stderr.write(s + s + ' twice ' + s + '\\n'); }, 50);`,
  binary: `process.stdout.write(Buffer.from([0x62, 0x69, 0x6e, 0x20, 0xff, 0xfe, 0x00, 0x41, 0x0a]));`,
  big: `for (let i = 0; i < 2000; i++) process.stdout.write('x'.repeat(100) + ' ' + i + '\\n');`,
  sleepy: `process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(143); });
console.log('started pid=' + process.pid + ' agent=' + process.ppid);
setInterval(() => {}, 1000);`,
};

describe('execution control with the process driver', () => {
  let reg: TestRegistry;
  let work: string;
  let sql: postgres.Sql;
  let orchestratorToken: string;
  let tenantToken: string;
  let otherTenantToken: string;

  beforeAll(async () => {
    await promisify(execFile)('pnpm', ['--filter', '@swarm/boot-agent', 'run', 'build']);
    reg = await startTestRegistry({
      storage: 'fs',
      env: { SWARM_HEARTBEAT_SECONDS: '1', SWARM_HEARTBEAT_MISSES: '3', SWARM_CANCEL_GRACE_SECONDS: '2' },
    });
    sql = postgres(reg.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-control-'));
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'other' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'app' }));
    const bundle = await bundleOf(path.join(work, 'app'), {
      'run.js': 'eval(process.argv[2]);\n',
      'swarm.json': '{"entrypoint":["node","run.js"]}',
    });
    await c.uploadBundle(bundle, { workflow: 'acme/app', activate: true });
    const token = async (scope: string, name: string) =>
      (await c.call(() => c.trpc.tokens.create.mutate({ scope, name } as never))).token as string;
    orchestratorToken = await token('orchestrator', 'orch');
    tenantToken = await token('tenant:acme', 'acme-ci');
    otherTenantToken = await token('tenant:other', 'other-ci');
  }, 180_000);
  afterAll(async () => {
    await sql?.end();
    await reg?.close();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  const run = (program: string, opts: Parameters<typeof spawnWorkflow>[2] = {}) =>
    spawnWorkflow(reg.client(orchestratorToken), 'acme/app', {
      agentPath,
      runtime: { command: ['node', 'run.js', program] },
      secrets: { API_KEY: SECRET },
      ...opts,
    });
  const eventsOf = async (id: string) => {
    const all: ExecutionEvent[] = [];
    for await (const e of reg.client().executionEvents(id)) all.push(e);
    return all;
  };
  const execution = (id: string, token = reg.adminToken) => {
    const c = reg.client(token);
    return c.call(() => c.trpc.executions.get.query({ id }));
  };
  const cancel = (id: string, token = orchestratorToken) => {
    const c = reg.client(token);
    return c.call(() => c.trpc.executions.cancel.mutate({ id }));
  };
  const waitFor = async <T>(what: () => Promise<T | undefined>, ms = 30_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await what();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error('timed out waiting');
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  it('captures 10,000 lines complete and in order, in batches within the event cap', async () => {
    const out = await run(PROGRAMS.chatty);
    expect(out.exitCode, out.output).toBe(0);
    const events = await eventsOf(out.executionId);
    const lines = outputLines(events);
    expect(lines.map((l) => l.text)).toEqual(Array.from({ length: 10_000 }, (_, i) => `line ${i}`));
    expect(lines.every((l) => l.stream === 'stdout')).toBe(true);
    expect(events.map((e) => e.type)).not.toContain('output_truncated');
    expect(events.at(-1)!.type).toBe('runtime_exited');
    // The console (the process driver's output) still has the lines.
    expect(out.output).toContain('line 9999\n');
  });

  it('masks a secret printed whole, split across two writes and repeated on one line: in events, logs, server log and console', async () => {
    const out = await run(PROGRAMS.secret);
    expect(out.exitCode, out.output).toBe(0);
    const lines = outputLines(await eventsOf(out.executionId));
    expect(lines.map((l) => `${l.stream}:${l.text}`)).toEqual(['stdout:whole ***', 'stdout:split *** end', 'stderr:****** twice ***']);
    const hits = await sql`select count(*)::int as n from execution_events where data::text like ${`%${SECRET.slice(4)}%`}`;
    expect(hits[0]!.n).toBe(0);
    expect(reg.logs.join('\n')).not.toContain(SECRET);
    expect(out.output).not.toContain(SECRET);
    const logs = await swarm(['logs', out.executionId], { SWARM_URL: reg.url, SWARM_TOKEN: reg.adminToken });
    expect(logs.stdout).toContain('whole ***');
    expect(logs.stdout).not.toContain(SECRET);
    maskedRun = out.executionId;
  });

  let maskedRun = '';
  it('swarm logs: output interleaved with events; --output-only, --events-only, --since, --json (one event a line)', async () => {
    const cli = (...args: string[]) => swarmInProcess(['--url', reg.url, '--token', reg.adminToken, ...args]);
    const all = await cli('logs', maskedRun);
    expect(all.code, all.stderr).toBe(0);
    const lines = all.stdout.trim().split('\n');
    const started = lines.findIndex((l) => l.includes(' runtime_started'));
    expect(lines.slice(started + 1, started + 4).map((l) => l.replace(/^\S+\s+/, ''))).toEqual([
      'out | whole ***',
      'out | split *** end',
      'err | ****** twice ***',
    ]);
    expect(lines.at(-1)).toMatch(/#\d+ runtime_exited/);
    const outputOnly = await cli('logs', maskedRun, '--output-only');
    expect(outputOnly.stdout.trim().split('\n')).toHaveLength(3);
    const eventsOnly = await cli('logs', maskedRun, '--events-only');
    expect(eventsOnly.stdout).not.toContain(' | ');
    expect(eventsOnly.stdout).toContain('runtime_started');
    const json = await cli('--json', 'logs', maskedRun, '--since', '5');
    const events = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ExecutionEvent);
    expect(events[0]!.seq).toBe(5);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => 5 + i));
    const later = await cli('--json', 'logs', maskedRun, '--since', '2999-01-01T00:00:00Z');
    expect(later.stdout).toBe('');
    const followed = await cli('--json', 'logs', maskedRun, '-f', '--output-only');
    expect(
      followed.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as ExecutionEvent).type),
    ).toEqual(['output']);
  });

  it('swarm logs refuses a bad --since and both --output-only and --events-only, before any request', async () => {
    const cli = (...args: string[]) => swarmInProcess(['--url', 'http://127.0.0.1:9', '--token', 'x', ...args]);
    const bad = await cli('logs', maskedRun, '--since', 'yesterday');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--since must be an event sequence number or an ISO time');
    const both = await cli('logs', maskedRun, '--output-only', '--events-only');
    expect(both.code).not.toBe(0);
    expect(both.stderr).toMatch(/cannot be used with/);
  });

  it('stops shipping at the output budget of the spawn, and says so once with the counts', async () => {
    const out = await run(PROGRAMS.big, { control: { outputMaxBytes: 20_000 } });
    expect(out.exitCode, out.output).toBe(0);
    const events = await eventsOf(out.executionId);
    const lines = outputLines(events);
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.length).toBeLessThan(2000);
    expect(lines.map((l) => l.text)).toEqual(Array.from({ length: lines.length }, (_, i) => `${'x'.repeat(100)} ${i}`));
    const truncated = events.filter((e) => e.type === 'output_truncated');
    expect(truncated).toHaveLength(1);
    expect(truncated[0]!.data).toMatchObject({ budgetLines: 2000 - lines.length, shippedLines: lines.length });
    expect((await execution(out.executionId)).status).toBe('succeeded');
    // The console kept every line: the budget is the registry's.
    expect(out.output).toContain(`${'x'.repeat(100)} 1999`);
  });

  it('escapes output that is not UTF-8 instead of dropping it', async () => {
    const out = await run(PROGRAMS.binary);
    expect(out.exitCode, out.output).toBe(0);
    expect(outputLines(await eventsOf(out.executionId))).toEqual([
      expect.objectContaining({ text: 'bin \\xff\\xfe\\x00A', escaped: true }),
    ]);
  });

  it('refuses an output budget over the per-execution event cap, creating nothing', async () => {
    const c = reg.client(orchestratorToken);
    const before = await sql`select count(*)::int as n from executions`;
    const err = (await c
      .call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app', outputMaxBytes: 1024 * 1024 * 1024 }))
      .catch((e: SwarmError) => e)) as SwarmError;
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.hint).toMatch(/SWARM_MAX_EVENT_BYTES_PER_EXECUTION/);
    expect(await sql`select count(*)::int as n from executions`).toEqual(before);
  });

  it('cancels a pending execution at once: cancelled, with a note, and its agent token is dead', async () => {
    const c = reg.client(orchestratorToken);
    const { execution: e, metadata } = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app' }));
    expect((await cancel(e.id)).status).toBe('cancelled');
    const events = await eventsOf(e.id);
    expect(events).toEqual([expect.objectContaining({ type: 'registry_note', data: expect.objectContaining({ reason: 'cancelled' }) })]);
    const agent = reg.client(metadata.execution!.agentToken);
    const refused = (await agent
      .call(() => agent.trpc.executions.exchangeToken.mutate({ executionId: e.id }))
      .catch((x: SwarmError) => x)) as SwarmError;
    expect(refused.code).toBe('UNAUTHORIZED');
    expect(((await cancel(e.id).catch((x: SwarmError) => x)) as SwarmError).code).toBe('CONFLICT');
    const again = await swarmInProcess(['--url', reg.url, '--token', orchestratorToken, 'executions', 'cancel', e.id]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('has already ended (cancelled)');
  });

  it('swarm executions cancel --json cancels and prints the execution', async () => {
    const c = reg.client(orchestratorToken);
    const { execution: e } = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app' }));
    const out = await swarmInProcess(['--url', reg.url, '--token', tenantToken, '--json', 'executions', 'cancel', e.id]);
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ id: e.id, status: 'cancelled' });
  });

  it("cancels a booting execution: cancel_requested, and the answer to its agent's next event says so", async () => {
    const c = reg.client(orchestratorToken);
    const { execution: e, metadata } = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app' }));
    const boot = reg.client(metadata.execution!.agentToken);
    const { sessionToken, heartbeatSeconds } = await boot.call(() => boot.trpc.executions.exchangeToken.mutate({ executionId: e.id }));
    expect(heartbeatSeconds).toBe(1);
    const agent = reg.client(sessionToken);
    const append = (seq: number, type: 'metadata_loaded' | 'cache_miss' | 'runtime_exited', data = {}) =>
      agent.call(() => agent.trpc.executions.appendEvent.mutate({ executionId: e.id, seq, type, data }));
    expect(await append(0, 'metadata_loaded')).toEqual({ accepted: true });
    const asked = await cancel(e.id);
    expect(asked.status).toBe('booting');
    expect(asked.cancelRequestedAt).not.toBeNull();
    expect(await append(1, 'cache_miss')).toEqual({ accepted: true, cancelRequested: true });
    // The agent stops (here: before the workflow started) and reports.
    await append(2, 'runtime_exited', { code: 143, stopped: 'cancelled' });
    expect(await execution(e.id)).toMatchObject({ status: 'cancelled', failureReason: 'cancelled' });
  });

  it('cancels a running execution: SIGTERM reaches the workflow, the agent reports, status cancelled', async () => {
    let id = '';
    const out = await run(PROGRAMS.sleepy, {
      onSpawned: (e) => (id = e.id),
      onOutput: (line) => {
        if (line.startsWith('started pid=')) void cancel(id);
      },
      agentEnv: { SWARM_STOP_GRACE_SECONDS: '5' },
    });
    expect(out.output).toContain('got SIGTERM');
    const e = await execution(id);
    expect(e).toMatchObject({ status: 'cancelled', failureReason: 'cancelled', exitCode: 143 });
    expect(e.cancelRequestedAt).not.toBeNull();
    const events = await eventsOf(id);
    expect(events.at(-1)).toMatchObject({ type: 'runtime_exited', data: { code: 143, stopped: 'cancelled' } });
    expect(outputLines(events).map((l) => l.text)).toContain('got SIGTERM');
  });

  it('stops a workflow past its timeout: failed with reason timed_out', async () => {
    const out = await run(PROGRAMS.sleepy, { control: { timeoutSeconds: 2 }, agentEnv: { SWARM_STOP_GRACE_SECONDS: '5' } });
    expect(out.output).toContain('got SIGTERM');
    expect(await execution(out.executionId)).toMatchObject({ status: 'failed', failureReason: 'timed_out', timeoutSeconds: 2 });
    expect((await eventsOf(out.executionId)).at(-1)).toMatchObject({ type: 'runtime_exited', data: { stopped: 'timed_out' } });
  });

  it("swarm workflows set --timeout gives spawns without their own timeout the workflow's; none clears it", async () => {
    const cli = (token: string, ...args: string[]) => swarmInProcess(['--url', reg.url, '--token', token, ...args]);
    const set = await cli(tenantToken, '--json', 'workflows', 'set', 'acme/app', '--timeout', '15m');
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ tenant: 'acme', name: 'app', timeoutSeconds: 900 });
    const c = reg.client(orchestratorToken);
    const spawnOf = async (timeoutSeconds?: number) =>
      (await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app', timeoutSeconds }))).execution;
    expect((await spawnOf()).timeoutSeconds).toBe(900);
    expect((await spawnOf(30)).timeoutSeconds).toBe(30);
    const bad = await cli(tenantToken, 'workflows', 'set', 'acme/app', '--timeout', 'soon');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--timeout must be a duration');
    const refused = await cli(orchestratorToken, 'workflows', 'set', 'acme/app', '--timeout', '1m');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('orchestrator tokens can read and resolve');
    const other = await cli(otherTenantToken, 'workflows', 'set', 'acme/app', '--timeout', '1m');
    expect(other.stderr).toContain('not found');
    expect((await c.call(() => c.trpc.workflows.get.query({ workflow: 'acme/app' }))).timeoutSeconds).toBe(900);
    expect((await cli(tenantToken, 'workflows', 'set', 'acme/app', '--timeout', 'none')).code).toBe(0);
    expect((await spawnOf()).timeoutSeconds).toBeNull();
  });

  it('swarm push --entrypoint writes swarm.json; refuses a file source, an empty command and another entrypoint, changing nothing', async () => {
    const dir = path.join(work, 'plain');
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'main.sh'), 'echo plain\n');
    const cli = (...args: string[]) => swarmInProcess(['--url', reg.url, '--token', reg.adminToken, ...args]);
    const versions = async () => (await reg.client().trpc.workflows.versions.query({ workflow: 'acme/app' })).length;
    const before = await versions();
    await fs.writeFile(path.join(work, 'some.tar.gz'), 'not looked at');
    const file = await cli('push', path.join(work, 'some.tar.gz'), '-w', 'acme/app', '--entrypoint', 'sh main.sh');
    expect(file.code).toBe(2);
    expect(file.stderr).toContain('--entrypoint needs a directory');
    const empty = await cli('push', dir, '-w', 'acme/app', '--entrypoint', '  ');
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('--entrypoint needs a command');
    await fs.writeFile(path.join(dir, 'swarm.json'), '{"entrypoint":["bash","main.sh"]}\n');
    const other = await cli('push', dir, '-w', 'acme/app', '--entrypoint', 'sh main.sh');
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('already names another entrypoint');
    expect(await fs.readFile(path.join(dir, 'swarm.json'), 'utf8')).toBe('{"entrypoint":["bash","main.sh"]}\n');
    expect(await versions()).toBe(before);
    await fs.rm(path.join(dir, 'swarm.json'));
    const ok = await cli('push', dir, '-w', 'acme/app', '--entrypoint', 'sh main.sh');
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(await fs.readFile(path.join(dir, 'swarm.json'), 'utf8'))).toEqual({ entrypoint: ['sh', 'main.sh'] });
    expect(await versions()).toBe(before + 1);
  });

  it('marks an execution whose agent was killed (SIGKILL) lost after missed heartbeats, with a note', async () => {
    let id = '';
    const out = await run(PROGRAMS.sleepy, {
      onSpawned: (e) => (id = e.id),
      onOutput: (line) => {
        const m = /^started pid=(\d+) agent=(\d+)$/.exec(line);
        if (!m) return;
        process.kill(Number(m[2]), 'SIGKILL');
        // The workflow is in a process group of its own: stopped too, as a dead VM would be.
        process.kill(-Number(m[1]), 'SIGKILL');
      },
    });
    expect(out.exitCode).not.toBe(0);
    const e = await waitFor(async () => {
      const x = await execution(id);
      return ['pending', 'booting', 'running'].includes(x.status) ? undefined : x;
    });
    expect(e).toMatchObject({ status: 'failed', failureReason: 'lost' });
    expect((await eventsOf(id)).at(-1)).toMatchObject({ type: 'registry_note', data: { status: 'failed', reason: 'lost' } });
  });

  it('ends a cancelled execution whose agent never reports after the grace period, with a note', async () => {
    const c = reg.client(orchestratorToken);
    const { execution: e, metadata } = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app' }));
    const boot = reg.client(metadata.execution!.agentToken);
    const { sessionToken } = await boot.call(() => boot.trpc.executions.exchangeToken.mutate({ executionId: e.id }));
    const agent = reg.client(sessionToken);
    const append = (seq: number, type: 'metadata_loaded' | 'runtime_started') =>
      agent.call(() => agent.trpc.executions.appendEvent.mutate({ executionId: e.id, seq, type, data: {} }));
    await append(0, 'metadata_loaded');
    await append(1, 'runtime_started');
    expect((await cancel(e.id)).status).toBe('running');
    // The agent hears of it in its next answer.
    expect(await agent.call(() => agent.trpc.executions.heartbeat.mutate({ executionId: e.id }))).toEqual({
      accepted: true,
      cancelRequested: true,
    });
    await sql`update executions set cancel_requested_at = now() - interval '1 hour' where id = ${e.id}`;
    expect((await reapExecutions(reg.deps, 3_600_000)).cancelled).toBe(1);
    expect(await execution(e.id)).toMatchObject({ status: 'cancelled', failureReason: 'cancelled' });
    expect((await eventsOf(e.id)).map((x) => [x.seq, x.type])).toEqual([
      [0, 'metadata_loaded'],
      [1, 'runtime_started'],
      [2, 'registry_note'],
    ]);
    const refused = (await agent
      .call(() => agent.trpc.executions.heartbeat.mutate({ executionId: e.id }))
      .catch((x: SwarmError) => x)) as SwarmError;
    expect(refused.code).toBe('UNAUTHORIZED');
  });

  it("lets a tenant token list, show, follow and cancel its own tenant's executions, and not another's (404)", async () => {
    const c = reg.client(orchestratorToken);
    const { execution: e } = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app' }));
    const mine = reg.client(tenantToken);
    expect((await mine.call(() => mine.trpc.executions.list.query({ workflow: 'acme/app' }))).map((x) => x.id)).toContain(e.id);
    expect((await execution(e.id, tenantToken)).id).toBe(e.id);
    const other = reg.client(otherTenantToken);
    for (const call of [
      () => other.call(() => other.trpc.executions.get.query({ id: e.id })),
      () => other.call(() => other.trpc.executions.events.query({ id: e.id })),
      () => other.call(() => other.trpc.executions.cancel.mutate({ id: e.id })),
      () => other.call(() => other.trpc.executions.list.query({ workflow: 'acme/app' })),
    ]) {
      expect(((await call().catch((x: SwarmError) => x)) as SwarmError).code).toBe('NOT_FOUND');
    }
    expect((await execution(e.id)).status).toBe('pending');
    expect((await cancel(e.id, tenantToken)).status).toBe('cancelled');
    const seen: string[] = [];
    await mine.watchExecution(e.id, (x) => seen.push(x.type));
    expect(seen).toEqual(['registry_note']);
    // Spawning stays the orchestrator's.
    expect(
      ((await mine.call(() => mine.trpc.executions.spawn.mutate({ workflow: 'acme/app' })).catch((x: SwarmError) => x)) as SwarmError).code,
    ).toBe('FORBIDDEN');
  });
});
