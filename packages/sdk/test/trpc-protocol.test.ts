/**
 * The registry's own tRPC handler (packages/server/src/http/trpc-native.ts) speaks tRPC 11's
 * wire protocol: the real `@trpc/client` links (httpLink, httpBatchLink, httpSubscriptionLink)
 * work against it unchanged, errors keep their codes, hints and HTTP statuses, a batch with
 * one failing call fails that call only, batches are capped, and a client's abort reaches
 * the procedure as an aborted signal.
 */
import { randomUUID } from 'node:crypto';
import { TRPCClientError, createTRPCClient, createTRPCClientProxy, httpBatchLink, httpLink, httpSubscriptionLink } from '@trpc/client';
import { EventSource } from 'eventsource';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { TRPC_MAX_BATCH_CALLS } from '../../server/src/http/app.js';
import { trpcRoutes } from '../../server/src/http/trpc-native.js';
import type { Principal } from '../../server/src/services/context.js';
import { routerOf } from '../../server/src/trpc/init.js';
import { mutation, query } from '../../server/src/trpc/procedure.js';
import type { AppRouter } from '../../server/src/trpc/router.js';
import { RegistryError } from '../../server/src/errors.js';
import { createSwarmClient } from '../src/index.js';
import { KeepAliveClient } from '../src/transport.js';
import { type TestRegistry, bundleBytes, startTestRegistry } from '../../../test/support/registry.js';

const errorOf = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TRPCClientError);
  return err as TRPCClientError<AppRouter>;
};

describe('tRPC wire protocol against the registry', () => {
  let reg: TestRegistry;
  let workflowId: string;
  let links: {
    single: ReturnType<typeof createTRPCClient<AppRouter>>;
    batched: ReturnType<typeof createTRPCClient<AppRouter>>;
  };
  const trpcUrl = () => `${reg.url}/trpc`;
  const client = (token: string) =>
    createTRPCClient<AppRouter>({ links: [httpLink({ url: trpcUrl(), headers: { authorization: `Bearer ${token}` } })] });

  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn' } });
    const headers = { authorization: `Bearer ${reg.adminToken}` };
    links = {
      single: createTRPCClient<AppRouter>({ links: [httpLink({ url: trpcUrl(), headers })] }),
      batched: createTRPCClient<AppRouter>({ links: [httpBatchLink({ url: trpcUrl(), headers, maxItems: 10 })] }),
    };
    await links.single.tenants.create.mutate({ slug: 'proto' });
    workflowId = (await links.single.workflows.create.mutate({ tenant: 'proto', name: 'app' })).id;
    await links.single.workflows.create.mutate({ tenant: 'proto', name: 'empty' });
    const res = await reg.fetch('/internal/bundles?workflow=proto/app&activate=true', {
      method: 'POST',
      headers: { 'content-type': 'application/gzip' },
      body: bundleBytes('protocol'),
    });
    expect(res.status).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await reg?.close();
  });

  it('answers a query through httpLink as the REST route does', async () => {
    const active = await links.single.versions.active.query({ workflow: 'proto/app' });
    const rest = await (await reg.fetch(`/internal/workflow/${workflowId}/active`)).json();
    expect(active).toMatchObject({ workflowId, version: rest.version, bundleHash: rest.bundleHash });
  });

  it('runs a mutation through httpLink (POST) and refuses it as GET with 405 and an allow header', async () => {
    const wf = await links.single.workflows.create.mutate({ tenant: 'proto', name: 'made' });
    expect(wf.name).toBe('made');
    const res = await reg.fetch(`/trpc/workflows.create?input=${encodeURIComponent(JSON.stringify({ tenant: 'proto', name: 'x' }))}`);
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect((await res.json()).error.data.code).toBe('METHOD_NOT_SUPPORTED');
  });

  it('refuses a batched POST naming a subscription with 405 and allow: GET, as tRPC does', async () => {
    const res = await reg.fetch('/trpc/executions.watch?batch=1', {
      method: 'POST',
      headers: { authorization: `Bearer ${reg.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ 0: { id: '00000000-0000-4000-8000-000000000000' } }),
    });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET');
  });

  it('runs a batch through httpBatchLink in one request, one answer per call', async () => {
    const [a, b, c] = await Promise.all([
      links.batched.versions.active.query({ workflow: 'proto/app' }),
      links.batched.workflows.get.query({ workflow: 'proto/app' }),
      links.batched.workflows.get.query({ workflow: 'proto/empty' }),
    ]);
    expect(a.workflowId).toBe(workflowId);
    expect(b.id).toBe(workflowId);
    expect(c.name).toBe('empty');
  });

  it('fails only the failing call of a batch, with its own code and hint; the batch answers 207', async () => {
    const results = await Promise.allSettled([
      links.batched.versions.active.query({ workflow: 'proto/app' }),
      links.batched.versions.active.query({ workflow: 'proto/empty' }),
      links.batched.workflows.get.query({ workflow: 'proto/app' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = (results[1] as PromiseRejectedResult).reason as TRPCClientError<AppRouter>;
    expect(err.data).toMatchObject({ code: 'NOT_FOUND', httpStatus: 404 });
    expect(err.data?.hint).toMatch(/activate one/);

    const input = encodeURIComponent(JSON.stringify({ 0: { workflow: 'proto/app' }, 1: { workflow: 'proto/empty' } }));
    const raw = await reg.fetch(`/trpc/versions.active,versions.active?batch=1&input=${input}`);
    expect(raw.status).toBe(207);
    const body = await raw.json();
    expect(body[0].result.data.workflowId).toBe(workflowId);
    expect(body[1].error.data).toMatchObject({ code: 'NOT_FOUND', httpStatus: 404 });
  });

  it('keeps error codes, hints and HTTP statuses: unauthorized 401', async () => {
    const err = await errorOf(client('not-a-token').versions.active.query({ workflow: 'proto/app' }));
    expect(err.data).toMatchObject({ code: 'UNAUTHORIZED', httpStatus: 401 });
    const raw = await reg.fetch(`/trpc/versions.active?input=${encodeURIComponent(JSON.stringify({ workflow: 'proto/app' }))}`, {
      token: 'not-a-token',
    });
    expect(raw.status).toBe(401);
    expect((await raw.json()).error).toMatchObject({ code: -32001, data: { code: 'UNAUTHORIZED', httpStatus: 401 } });
  });

  it('keeps error codes, hints and HTTP statuses: not found 404 with a hint', async () => {
    const raw = await reg.fetch(`/trpc/versions.active?input=${encodeURIComponent(JSON.stringify({ workflow: 'proto/empty' }))}`);
    expect(raw.status).toBe(404);
    const { error } = await raw.json();
    expect(error.message).toMatch(/no active version/);
    expect(error.data).toMatchObject({ code: 'NOT_FOUND', httpStatus: 404, hint: expect.stringMatching(/swarm activate/) });
  });

  it('keeps error codes, hints and HTTP statuses: conflict 409 on a mutation', async () => {
    const err = await errorOf(links.single.workflows.create.mutate({ tenant: 'proto', name: 'app' }));
    expect(err.data).toMatchObject({ code: 'CONFLICT', httpStatus: 409 });
  });

  it('refuses invalid input with BAD_REQUEST and the issues in the message', async () => {
    const err = await errorOf(links.single.versions.active.query({ workflow: '' }));
    expect(err.data).toMatchObject({ code: 'BAD_REQUEST', httpStatus: 400 });
    expect(err.message).toMatch(/^invalid input: /);
  });

  it('refuses malformed JSON input with 400', async () => {
    const raw = await reg.fetch('/trpc/versions.active?input=%7Bnot-json');
    expect(raw.status).toBe(400);
    expect((await raw.json()).error.data.code).toBe('BAD_REQUEST');
  });

  it('refuses a batch input that is not an object with 400', async () => {
    const raw = await reg.fetch('/trpc/versions.active?batch=1&input=%5B1%5D');
    expect(raw.status).toBe(400);
    expect((await raw.json()).error.message).toMatch(/needs to be an object/);
  });

  it('answers an unknown procedure with 404 NOT_FOUND', async () => {
    const raw = await reg.fetch('/trpc/versions.nope?input=%7B%7D');
    expect(raw.status).toBe(404);
    expect((await raw.json()).error.data.code).toBe('NOT_FOUND');
  });

  it(`refuses a batch of more than ${TRPC_MAX_BATCH_CALLS} calls whole, with 400`, async () => {
    const paths = Array.from({ length: TRPC_MAX_BATCH_CALLS + 1 }, () => 'workflows.get').join(',');
    const raw = await reg.fetch(`/trpc/${paths}?batch=1&input=%7B%7D`);
    expect(raw.status).toBe(400);
    expect((await raw.json()).error.message).toMatch(/exceeds maximum size/);
    const ok = Array.from({ length: TRPC_MAX_BATCH_CALLS }, () => 'workflows.get').join(',');
    const inputs = Object.fromEntries(Array.from({ length: TRPC_MAX_BATCH_CALLS }, (_, i) => [i, { workflow: 'proto/app' }]));
    const full = await reg.fetch(`/trpc/${ok}?batch=1&input=${encodeURIComponent(JSON.stringify(inputs))}`);
    expect(full.status).toBe(200);
    expect(await full.json()).toHaveLength(TRPC_MAX_BATCH_CALLS);
  });

  it('labels metrics by procedure; batches and unknown names share one label each', async () => {
    await reg.fetch(
      `/trpc/workflows.get,nope-${Date.now()}?batch=1&input=${encodeURIComponent(JSON.stringify({ 0: { workflow: 'proto/app' } }))}`,
    );
    await reg.fetch(`/trpc/random-${Date.now()}?input=%7Bbad`);
    const metrics = await (await reg.fetch('/metrics')).text();
    expect(metrics).toContain('route="/trpc/versions.active"');
    expect(metrics).toContain('route="/trpc/(batch)"');
    expect(metrics).toContain('route="/trpc/(unknown)"');
    expect(metrics).not.toMatch(/route="\/trpc\/[^"]*(nope|random)-/);
  });

  it('batches through the SDK (createSwarmClient batch): at most maxItems calls per request, errors per call', async () => {
    const batches = async () => {
      const text = await (await reg.fetch('/metrics')).text();
      return text
        .split('\n')
        .filter((l) => l.startsWith('swarm_http_requests_total{') && l.includes('route="/trpc/(batch)"'))
        .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    };
    const before = await batches();
    const sdk = createSwarmClient({ url: reg.url, token: reg.adminToken, batch: { maxItems: 2 } });
    const results = await Promise.allSettled([
      sdk.resolveActive('proto/app'),
      sdk.resolveActive('proto/empty'),
      sdk.call(() => sdk.trpc.workflows.get.query({ workflow: 'proto/app' })),
      sdk.call(() => sdk.trpc.workflows.get.query({ workflow: 'proto/empty' })),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'NOT_FOUND', hint: expect.stringMatching(/activate/) });
    // Four calls, at most two per request: two batch requests (one, with the default 50).
    expect((await batches()) - before).toBe(2);
  });

  it('streams a subscription through httpSubscriptionLink (the stock adapter path)', async () => {
    const admin = reg.client();
    const { token } = await admin.call(() => admin.trpc.tokens.create.mutate({ scope: 'orchestrator', name: 'proto' }));
    const { execution, metadata } = await client(token).executions.spawn.mutate({ workflow: 'proto/app' });
    const { sessionToken } = await client(metadata.execution!.agentToken).executions.exchangeToken.mutate({ executionId: execution.id });
    const agent = client(sessionToken);
    await agent.executions.appendEvent.mutate({ executionId: execution.id, seq: 0, type: 'metadata_loaded', data: {} });
    await agent.executions.appendEvent.mutate({ executionId: execution.id, seq: 1, type: 'runtime_exited', data: { code: 0 } });

    const authorization = `Bearer ${token}`;
    const subscriber = createTRPCClient<AppRouter>({
      links: [
        httpSubscriptionLink({
          url: trpcUrl(),
          EventSource,
          eventSourceOptions: {
            fetch: (input: string | URL | Request, init?: RequestInit) =>
              fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization } }),
          },
        }),
      ],
    });
    const seen = await new Promise<string[]>((resolve, reject) => {
      const types: string[] = [];
      subscriber.executions.watch.subscribe(
        { id: execution.id },
        { onData: (t) => types.push(t.data.type), onComplete: () => resolve(types), onError: reject },
      );
    });
    expect(seen).toEqual(['metadata_loaded', 'runtime_exited']);
  });
});

describe('tRPC handler: aborts', () => {
  const principal: Principal = { tokenId: null, name: 'test', scope: 'admin', tenantId: null };
  let released: () => void = () => {};
  const aborted: string[] = [];
  const testProcedures = {
    slow: query({
      input: z.object({ id: z.string() }),
      output: z.string(),
      run: ({ input, signal }) =>
        new Promise<string>((resolve) => {
          signal?.addEventListener('abort', () => {
            aborted.push(input.id);
            resolve('aborted');
          });
          released = () => resolve('done');
        }),
    }),
    /** An input schema with an async check: parsed asynchronously, as tRPC would. */
    doubled: query({
      input: z.object({ n: z.number() }).refine(async (v) => v.n > 0, 'must be positive'),
      output: z.number(),
      run: async ({ input }) => input.n * 2,
    }),
    failing: mutation({
      output: z.void(),
      run: async () => {
        throw new RegistryError('PRECONDITION_FAILED', 'not now', 'try later');
      },
    }),
  };
  const testRouter = routerOf(testProcedures);
  const app = Fastify();
  let url: string;
  beforeAll(async () => {
    await trpcRoutes(app, {
      prefix: '/trpc',
      router: testRouter,
      procedures: new Map(Object.entries(testProcedures)),
      maxBodySize: 1024,
      maxBatchSize: 5,
      checkAnswers: true,
      principalOf: async () => principal,
      reportError: () => {},
    });
    url = `${await app.listen({ port: 0, host: '127.0.0.1' })}/trpc`;
  });
  afterAll(() => app.close());

  /** A slow call aborted by its client while in flight fails as aborted, and the procedure sees the abort. */
  async function expectAbortInFlight(c: { slow: { query: (input: { id: string }, opts: { signal: AbortSignal }) => Promise<string> } }) {
    const controller = new AbortController();
    const id = randomUUID();
    const call = c.slow.query({ id }, { signal: controller.signal });
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TRPCClientError);
    expect((err as Error).message).toMatch(/abort/i);
    await expect.poll(() => aborted).toContain(id);
  }

  it('aborts the procedure when the client aborts the call', async () => {
    await expectAbortInFlight(createTRPCClient<typeof testRouter>({ links: [httpLink({ url })] }));
  });

  it("aborts through the SDK's own transport too (KeepAliveClient), before and during the call", async () => {
    const c = createTRPCClientProxy<typeof testRouter>(new KeepAliveClient({ url, headers: {}, links: [] }));
    await expectAbortInFlight(c);
    const early = await c.slow.query({ id: randomUUID() }, { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(early).toBeInstanceOf(TRPCClientError);
    expect((early as Error).message).toMatch(/abort/i);
    const failed = await c.failing.mutate().catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(TRPCClientError);
    expect((failed as TRPCClientError<typeof testRouter>).data).toMatchObject({
      code: 'PRECONDITION_FAILED',
      httpStatus: 412,
      hint: 'try later',
    });
  });

  it('answers a call the client did not abort', async () => {
    const c = createTRPCClient<typeof testRouter>({ links: [httpLink({ url })] });
    const call = c.slow.query({ id: 'kept' });
    await new Promise((r) => setTimeout(r, 50));
    released();
    expect(await call).toBe('done');
    expect(aborted).not.toContain('kept');
  });

  it('checks an input whose schema is async, and refuses a bad one with BAD_REQUEST', async () => {
    const c = createTRPCClient<typeof testRouter>({ links: [httpLink({ url })] });
    expect(await c.doubled.query({ n: 21 })).toBe(42);
    const err = (await c.doubled.query({ n: -1 }).catch((e: unknown) => e)) as TRPCClientError<typeof testRouter>;
    expect(err.data).toMatchObject({ code: 'BAD_REQUEST', httpStatus: 400 });
    expect(err.message).toContain('must be positive');
  });

  it('maps a RegistryError thrown by a mutation to its code, status and hint', async () => {
    const c = createTRPCClient<typeof testRouter>({ links: [httpBatchLink({ url })] });
    const err = (await c.failing.mutate().catch((e: unknown) => e)) as TRPCClientError<typeof testRouter>;
    expect(err.data).toMatchObject({ code: 'PRECONDITION_FAILED', httpStatus: 412, hint: 'try later' });
  });

  it('refuses a body over the size limit with 413', async () => {
    const res = await fetch(`${url}/failing`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ x: 'y'.repeat(2048) }),
    });
    expect(res.status).toBe(413);
  });
});
