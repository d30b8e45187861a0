/**
 * The agent's side of the credential exchange, against the real registry: it trades the
 * metadata's bootstrap token for a session before the runtime starts and reports with
 * that session; a workload holding the bootstrap token can do nothing with it. A registry
 * out of reach or a refused exchange never stops the workflow, and an event refused for
 * a cap is logged while the agent carries on to its final report.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listBundleEntries, packDirectory } from '@swarm/sdk';
import { type TestRegistry, startTestRegistry } from '../../../test/support/registry.js';
import { type AgentSandbox, agentSandbox } from './support/run-agent.js';

/** The workload of the attack: it holds the bootstrap token and tries to use it. */
const THIEF = `const [token, api, id] = process.argv.slice(1);
console.log('env holds a credential: ' + /sw[as]_/.test(JSON.stringify(process.env)));
const post = (p, body) => fetch(api + '/trpc/' + p, {
  method: 'POST', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, body: JSON.stringify(body),
}).then((r) => r.status);
(async () => {
  console.log('exchange: ' + await post('executions.exchangeToken', { executionId: id }));
  console.log('forged runtime_exited: ' + await post('executions.appendEvent', { executionId: id, seq: 6, type: 'runtime_exited', data: { code: 0 } }));
  process.exit(3);
})();`;

describe('the boot agent and its credentials, with the real registry', () => {
  let reg: TestRegistry;
  let capped: TestRegistry;
  let sandbox: AgentSandbox;

  /** A registry with acme/job active; spawn() writes the VM metadata where the agent reads it. */
  async function registry(env: Record<string, string> = {}) {
    const r = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn', ...env } });
    const src = path.join(sandbox.dir, `src-${r.url.split(':').at(-1)}`);
    await fs.mkdir(src, { recursive: true });
    await fs.writeFile(path.join(src, 'main.sh'), 'echo hi\n');
    const file = `${src}.tar.gz`;
    await fs.writeFile(file, packDirectory(src, await listBundleEntries(src)));
    const c = r.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'job' }));
    await c.uploadBundle(file, { workflow: 'acme/job', activate: true });
    return r;
  }
  async function spawn(r: TestRegistry, apiUrl?: string) {
    const c = r.client();
    const s = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/job', ...(apiUrl ? { apiUrl } : {}) }));
    await fs.writeFile(path.join(sandbox.dir, 'metadata.json'), JSON.stringify(s.metadata));
    return { id: s.execution.id, bootstrap: s.metadata.execution!.agentToken, apiUrl: s.metadata.apiUrl! };
  }
  const state = async (r: TestRegistry, id: string) => {
    const sql = postgres(r.deps.config.databaseUrl!, { max: 1, onnotice: () => {} });
    try {
      const [row] = await sql`select status, exit_code, agent_token_hash, agent_session_hash from executions where id = ${id}`;
      const events = await sql`select seq, type from execution_events where execution_id = ${id} order by seq`;
      return { ...row, events: events.map((e) => `${e.seq} ${e.type}`) };
    } finally {
      await sql.end();
    }
  };

  beforeAll(async () => {
    sandbox = await agentSandbox();
    [reg, capped] = await Promise.all([registry(), registry({ SWARM_MAX_EVENTS_PER_EXECUTION: '3' })]);
  }, 120_000);
  afterAll(async () => {
    await reg?.close();
    await capped?.close();
    await sandbox?.remove();
  });

  it('exchanges before the runtime starts and reports with the session; the workload holding the bootstrap token gets nowhere', async () => {
    const { id, bootstrap, apiUrl } = await spawn(reg);
    const r = await sandbox.run(['--', process.execPath, '-e', THIEF, bootstrap, apiUrl, id]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).toContain('env holds a credential: false');
    expect(r.stdout).toContain('exchange: 401');
    expect(r.stdout).toContain('forged runtime_exited: 401');
    const { events, ...ended } = await state(reg, id);
    expect(ended).toEqual({ status: 'failed', exit_code: 3, agent_token_hash: null, agent_session_hash: null });
    // What the thief printed arrives as one or more output events (batches close on time, #16).
    const types = events.map((e: string) => e.split(' ')[1] ?? '');
    expect(types.filter((t: string) => t !== 'output')).toEqual([
      'metadata_loaded',
      'cache_miss',
      'fetched',
      'verified',
      'unpacked',
      'runtime_started',
      'runtime_exited',
    ]);
    expect(types.slice(6, -1).length).toBeGreaterThan(0);
    expect(new Set(types.slice(6, -1))).toEqual(new Set(['output']));
    expect(r.stderr).not.toMatch(/sw[as]_/);
  });

  it('runs the workflow unreported when the registry is out of reach for SWARM_EXCHANGE_SECONDS', async () => {
    // A port that refuses connections: taken, then closed.
    const dead = net.createServer();
    await new Promise<void>((res) => dead.listen(0, '127.0.0.1', res));
    const port = (dead.address() as net.AddressInfo).port;
    await new Promise((res) => dead.close(res));
    const { id } = await spawn(reg, `http://127.0.0.1:${port}`);
    const r = await sandbox.run(['--', process.execPath, '-e', 'process.exit(0)'], { SWARM_EXCHANGE_SECONDS: '1' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('cannot exchange the agent token for a session');
    expect(r.stderr).toContain('cannot report events');
    expect(await state(reg, id)).toMatchObject({ status: 'pending', events: [] });
  });

  it('takes a refused exchange as final (the token was spent): one attempt, the workflow runs, events go unsent', async () => {
    // The real registry behind a forwarder that counts the agent's requests.
    const calls: string[] = [];
    const counter = http.createServer(async (req, res) => {
      calls.push(req.url ?? '');
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers = { authorization: req.headers.authorization ?? '', 'content-type': req.headers['content-type'] ?? 'application/json' };
      const answer = await fetch(`${reg.url}${req.url}`, { method: req.method, headers, body: Buffer.concat(chunks) });
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'text/plain' });
      res.end(Buffer.from(await answer.arrayBuffer()));
    });
    await new Promise<void>((res) => counter.listen(0, '127.0.0.1', res));
    try {
      const { id, bootstrap } = await spawn(reg, `http://127.0.0.1:${(counter.address() as net.AddressInfo).port}`);
      const c = reg.client(bootstrap);
      await c.call(() => c.trpc.executions.exchangeToken.mutate({ executionId: id }));
      const r = await sandbox.run(['--', process.execPath, '-e', 'process.exit(5)'], { SWARM_EXCHANGE_SECONDS: '30' });
      expect(r.code, r.stderr).toBe(5);
      expect(calls).toEqual(['/trpc/executions.exchangeToken']);
      expect(r.stderr).toMatch(/cannot exchange the agent token for a session \(HTTP 401: [^)]*spent/);
      expect(await state(reg, id)).toMatchObject({ status: 'pending', events: [] });
    } finally {
      await new Promise((res) => counter.close(res));
    }
  });

  it('logs an event refused for a cap and carries on; the final report still lands and ends the execution', async () => {
    const { id } = await spawn(capped); // the same bundle as before: a warm boot from the cache
    const r = await sandbox.run(['--', process.execPath, '-e', 'process.exit(0)']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/the registry refused event #3 runtime_started \(HTTP 412: [^)]*cap/);
    expect(await state(capped, id)).toEqual({
      status: 'succeeded',
      exit_code: 0,
      agent_token_hash: null,
      agent_session_hash: null,
      events: ['0 metadata_loaded', '1 cache_hit', '2 unpacked', '4 runtime_exited'],
    });
  });
});
