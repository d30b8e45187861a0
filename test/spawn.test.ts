/**
 * The spawn path end to end with the `process` driver: the registry picks the active
 * version, mints an agent token and hands the VM its metadata over MMDS; the boot agent
 * fetches from the S3 server, verifies, runs and reports. Secrets never reach the
 * database, the logs or the events; a tampered object is never run.
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { blobKey } from '../packages/server/src/storage/bundle-store.js';
import type { SwarmError } from '../packages/sdk/src/index.js';
import { spawnWorkflow } from '../packages/sdk/src/orchestrator/index.js';
import { bundleOf } from './support/bundles.js';
import { swarm } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

const agentPath = path.resolve(import.meta.dirname, '../packages/boot-agent/dist/boot-agent.mjs');
const SECRET = `s3cr3t-${Date.now()}-do-not-leak`;
const digest = createHash('sha256').update(SECRET).digest('hex');

const program = (label: string) => `const { createHash } = require('node:crypto');
require('node:fs').writeFileSync('result.txt', '${label}');
console.log('${label} digest=' + createHash('sha256').update(process.env.API_KEY ?? '').digest('hex'));
`;

describe('spawn with the process driver', () => {
  let reg: TestRegistry;
  let work: string;
  let cacheDir: string;
  let sql: postgres.Sql;
  beforeAll(async () => {
    await promisify(execFile)('pnpm', ['--filter', '@swarm/boot-agent', 'run', 'build']);
    reg = await startTestRegistry({ storage: 's3' });
    sql = postgres(reg.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-spawn-'));
    cacheDir = path.join(work, 'cache');
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'job' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'idle' }));
    const v1 = await bundleOf(path.join(work, 'v1'), { 'index.js': program('v1'), 'swarm.json': '{"entrypoint":["node","index.js"]}' });
    await c.uploadBundle(v1, { workflow: 'acme/job', activate: true });
  }, 180_000);
  afterAll(async () => {
    await sql?.end();
    await reg?.close();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  const orchestrator = async () => {
    const admin = reg.client();
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'orchestrator' }));
    return reg.client(token);
  };
  const eventsOf = async (id: string) => {
    const c = reg.client();
    return c.call(() => c.trpc.executions.events.query({ id }));
  };

  let firstExecution: string;
  it('runs the active version with secrets in its environment only, and records every step', async () => {
    const client = await orchestrator();
    const lines: string[] = [];
    const out = await spawnWorkflow(client, 'acme/job', {
      agentPath,
      cacheDir,
      secrets: { API_KEY: SECRET },
      onOutput: (l) => lines.push(l),
    });
    firstExecution = out.executionId;
    expect(out.exitCode, out.output).toBe(0);
    expect(lines).toContain(`v1 digest=${digest}`);

    const execution = await client.call(() => client.trpc.executions.get.query({ id: out.executionId }));
    expect(execution).toMatchObject({ status: 'succeeded', exitCode: 0, version: 1, spawnedBy: 'orchestrator' });
    expect(execution.startedAt).not.toBeNull();
    expect(execution.finishedAt).not.toBeNull();
    const events = await eventsOf(out.executionId);
    expect(events.map((e) => e.type)).toEqual([
      'metadata_loaded',
      'cache_miss',
      'fetched',
      'verified',
      'unpacked',
      'runtime_started',
      'output',
      'runtime_exited',
    ]);
    expect(events.map((e) => e.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);

    const dump = await sql.unsafe(
      `select string_agg(t::text, ' ') as all from (
         select to_jsonb(x)::text as t from executions x union all select to_jsonb(x)::text from execution_events x
         union all select to_jsonb(x)::text from api_tokens x union all select to_jsonb(x)::text from workflow_versions x) s`,
    );
    expect(dump[0]!.all).not.toContain(SECRET);
    expect(reg.logs.join('\n')).not.toContain(SECRET);
    expect(JSON.stringify(events)).not.toContain(SECRET);
  });

  it('picks the version that is active at spawn time', async () => {
    const c = reg.client();
    const v2 = await bundleOf(path.join(work, 'v2'), { 'index.js': program('v2'), 'swarm.json': '{"entrypoint":["node","index.js"]}' });
    await c.uploadBundle(v2, { workflow: 'acme/job', activate: true });
    const out = await spawnWorkflow(await orchestrator(), 'acme/job', { agentPath, cacheDir, secrets: { API_KEY: SECRET } });
    expect(out.exitCode, out.output).toBe(0);
    expect(out.output).toContain(`v2 digest=${digest}`);
    expect((await c.call(() => c.trpc.executions.get.query({ id: out.executionId }))).version).toBe(2);
  });

  it('boots from the cache the second time, without a request to the store', async () => {
    const countStoreRequests = async () => {
      const log = inject('s3').logFile;
      return log ? (await fs.readFile(log, 'utf8')).split('\n').filter((l) => l.includes(`/${reg.bucket}/blobs/sha256/`)).length : null;
    };
    const before = await countStoreRequests();
    const out = await spawnWorkflow(await orchestrator(), 'acme/job', { agentPath, cacheDir });
    expect(out.exitCode, out.output).toBe(0);
    expect((await eventsOf(out.executionId)).map((e) => e.type)).toContain('cache_hit');
    if (before !== null) expect(await countStoreRequests()).toBe(before);
  });

  it('runs from the CLI: spawn --wait streams and exits with the code; spawn then logs -f follows', async () => {
    const env = { SWARM_URL: reg.url, SWARM_TOKEN: reg.adminToken, SWARM_BOOT_AGENT: agentPath };
    const waited = await swarm(['spawn', 'acme/job', '--wait', '--secret', `API_KEY=${SECRET}`, '--cache-dir', cacheDir], env);
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toContain(`v2 digest=${digest}`);

    const started = await swarm(['spawn', 'acme/job', '--json'], env);
    expect(started.code, started.stderr).toBe(0);
    const { id } = JSON.parse(started.stdout) as { id: string };
    const followed = await swarm(['logs', id, '-f', '--json'], env);
    expect(followed.code, followed.stderr).toBe(0);
    const followedTypes = followed.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { type: string }).type);
    expect(followedTypes.at(-1)).toBe('runtime_exited');
    const shown = JSON.parse((await swarm(['executions', 'show', id, '--json'], env)).stdout);
    expect(shown).toMatchObject({ id, status: 'succeeded', exitCode: 0 });
    const listed = JSON.parse((await swarm(['executions', 'list', 'acme/job', '--json'], env)).stdout) as Array<{ id: string }>;
    expect(listed[0]!.id).toBe(id);
    expect(JSON.stringify(await eventsOf(id))).not.toContain(SECRET);
  });

  it('refuses to run bytes replaced behind the registry: failed with hash_mismatch', async () => {
    const c = reg.client();
    const active = await c.resolveActive('acme/job');
    await reg.deps.store.driver.delete(blobKey(active.bundleHash));
    await reg.deps.store.driver.put(blobKey(active.bundleHash), Readable.from([Buffer.alloc(active.size, 7)]));
    const out = await spawnWorkflow(await orchestrator(), 'acme/job', { agentPath, cacheDir: path.join(work, 'fresh-cache') });
    expect(out.exitCode).toBe(65);
    expect(out.output).not.toContain('v2 digest');
    const execution = await c.call(() => c.trpc.executions.get.query({ id: out.executionId }));
    expect(execution).toMatchObject({ status: 'failed', failureReason: 'hash_mismatch' });
  });

  it('lists executions newest first, page by page', async () => {
    const c = reg.client();
    const all = await c.call(() => c.trpc.executions.list.query({ workflow: 'acme/job' }));
    expect(all.length).toBe(6);
    expect(all.at(-1)!.id).toBe(firstExecution);
    const page1 = await c.call(() => c.trpc.executions.list.query({ workflow: 'acme/job', limit: 3 }));
    const page2 = await c.call(() => c.trpc.executions.list.query({ workflow: 'acme/job', limit: 3, cursor: page1.at(-1)!.id }));
    expect([...page1, ...page2].map((e) => e.id)).toEqual(all.map((e) => e.id));
  });

  it('spawns nothing for a workflow without an active version', async () => {
    const client = await orchestrator();
    const err = await client.call(() => client.trpc.executions.spawn.mutate({ workflow: 'acme/idle' })).catch((e: SwarmError) => e);
    expect(err).toMatchObject({ code: 'NOT_FOUND' });
    const [row] = await sql`select count(*)::int as n from executions e join workflows w on w.id = e.workflow_id where w.name = 'idle'`;
    expect(row!.n).toBe(0);
  });

  it('runs N executions from the CLI: spawn --count 3 --wait creates them in one call and runs each VM', async () => {
    const env = { SWARM_URL: reg.url, SWARM_TOKEN: reg.adminToken, SWARM_BOOT_AGENT: agentPath };
    const r = await swarm(
      ['spawn', 'acme/job', '--count', '3', '--wait', '--json', '--secret', `API_KEY=${SECRET}`, '--cache-dir', cacheDir],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    const runs = JSON.parse(r.stdout) as Array<{ id: string; status: string; exitCode: number }>;
    expect(runs).toHaveLength(3);
    expect(new Set(runs.map((e) => e.id)).size).toBe(3);
    for (const e of runs) expect(e).toMatchObject({ status: 'succeeded', exitCode: 0 });
  });

  for (const [what, count] of [
    ['zero', '0'],
    ['more than 1,000', '1001'],
    ['not a number', 'many'],
  ] as const) {
    it(`refuses spawn --count ${what}, creating nothing`, async () => {
      const env = { SWARM_URL: reg.url, SWARM_TOKEN: reg.adminToken, SWARM_BOOT_AGENT: agentPath };
      const before = (await sql`select count(*)::int as n from executions`)[0]!.n;
      const r = await swarm(['spawn', 'acme/job', '--count', count], env);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/--count.*a whole number from 1 to 1000/);
      const after = (await sql`select count(*)::int as n from executions`)[0]!.n;
      expect(after).toBe(before);
    });
  }

  it('gives agent tokens their own execution and nothing else', async () => {
    const client = await orchestrator();
    const a = await client.call(() => client.trpc.executions.spawn.mutate({ workflow: 'acme/job' }));
    const b = await client.call(() => client.trpc.executions.spawn.mutate({ workflow: 'acme/job' }));
    // The metadata's token is a bootstrap credential: the agent reports with the session it trades it for.
    const bootstrapA = reg.client(a.metadata.execution!.agentToken);
    const { sessionToken } = await bootstrapA.call(() => bootstrapA.trpc.executions.exchangeToken.mutate({ executionId: a.execution.id }));
    const agentA = reg.client(sessionToken);
    const append = (executionId: string, seq: number) =>
      agentA.call(() => agentA.trpc.executions.appendEvent.mutate({ executionId, seq, type: 'metadata_loaded', data: {} }));
    expect(await append(a.execution.id, 0)).toEqual({ accepted: true });
    expect(await append(a.execution.id, 0)).toEqual({ accepted: false }); // a retry is idempotent
    expect((await append(b.execution.id, 0).catch((e: SwarmError) => e)) as SwarmError).toMatchObject({ code: 'NOT_FOUND' });
    expect((await agentA.call(() => agentA.trpc.tenants.list.query()).catch((e: SwarmError) => e)) as SwarmError).toMatchObject({
      code: 'UNAUTHORIZED',
    });
    expect(
      await reg
        .fetch(`/internal/workflow/${a.execution.workflowId}/active`, { token: a.metadata.execution!.agentToken })
        .then((r) => r.status),
    ).toBe(401);
    // An API token cannot pose as an agent.
    expect(
      (await client
        .call(() => client.trpc.executions.appendEvent.mutate({ executionId: a.execution.id, seq: 1, type: 'failed', data: {} }))
        .catch((e: SwarmError) => e)) as SwarmError,
    ).toMatchObject({ code: 'UNAUTHORIZED' });
    await sql`update executions set agent_token_expires_at = now() - interval '1 second' where id = ${b.execution.id}`;
    const bootstrapB = reg.client(b.metadata.execution!.agentToken);
    expect(
      (await bootstrapB
        .call(() => bootstrapB.trpc.executions.exchangeToken.mutate({ executionId: b.execution.id }))
        .catch((e: SwarmError) => e)) as SwarmError,
    ).toMatchObject({ code: 'UNAUTHORIZED' });
    expect((await client.call(() => client.trpc.executions.get.query({ id: a.execution.id }))).status).toBe('booting');
  });

  it('lets only orchestrator and admin tokens spawn', async () => {
    const admin = reg.client();
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'tenant:acme' }));
    const tenant = reg.client(token);
    const err = await tenant.call(() => tenant.trpc.executions.spawn.mutate({ workflow: 'acme/job' })).catch((e: SwarmError) => e);
    expect(err).toMatchObject({ code: 'FORBIDDEN' });
  });
});
