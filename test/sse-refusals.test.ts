/**
 * A refused subscription (executions.watch over SSE) answers 401/404/400 with a JSON error
 * before a byte of stream (http/subscription-guard.ts), and the SDK's watchExecution
 * surfaces it as a SwarmError with the registry's code and message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SwarmError } from '../packages/sdk/src/index.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

describe('subscription refusals before the stream', () => {
  let reg: TestRegistry;
  let executionId: string;
  let revoked: string;
  let otherTenant: string;
  let agentToken: string;

  beforeAll(async () => {
    reg = await startTestRegistry({ storage: 'fs' });
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'other' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'app' }));
    const { bundleBytes } = await import('./support/registry.js');
    const fs = await import('node:fs/promises');
    const path = await import('node:path');
    const file = path.join(reg.dataDir, 'b.tar.gz');
    await fs.writeFile(file, bundleBytes('sse'));
    await c.uploadBundle(file, { workflow: 'acme/app', activate: true });
    const spawned = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app' }));
    executionId = spawned.execution.id;
    agentToken = spawned.metadata.execution!.agentToken;
    const gone = await c.call(() => c.trpc.tokens.create.mutate({ scope: 'admin', name: 'gone' }));
    await c.call(() => c.trpc.tokens.revoke.mutate({ id: gone.id }));
    revoked = gone.token;
    otherTenant = (await c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:other', name: 'other' }))).token;
  }, 120_000);
  afterAll(async () => {
    await reg?.close();
  });

  const watchUrl = (input: unknown) => `/trpc/executions.watch?input=${encodeURIComponent(JSON.stringify(input))}`;
  const expectRefused = async (res: Response, status: number, code: string) => {
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { error: { message: string; data: { code: string; httpStatus: number } } };
    expect(body.error.data).toMatchObject({ code, httpStatus: status });
    expect(body.error.message).toBeTruthy();
  };

  const badTokens: Array<[string, () => string | null]> = [
    ['no token', () => null],
    ['a malformed token', () => 'not a token at all'],
    ['an unknown token', () => 'swt_nope'],
    ['a revoked token', () => revoked],
    ['the admin token with a character more', () => `${reg.adminToken}x`],
    ["the execution's own agent token", () => agentToken],
  ];
  for (const [name, token] of badTokens) {
    it(`answers 401 before any stream for ${name}`, async () => {
      await expectRefused(await reg.fetch(watchUrl({ id: executionId }), { token: token() }), 401, 'UNAUTHORIZED');
    });
  }

  it("answers 404 for another tenant's execution, and for an unknown one", async () => {
    await expectRefused(await reg.fetch(watchUrl({ id: executionId }), { token: otherTenant }), 404, 'NOT_FOUND');
    await expectRefused(await reg.fetch(watchUrl({ id: '00000000-0000-4000-8000-000000000000' })), 404, 'NOT_FOUND');
  });

  it('answers 400 for input that is not JSON or not a valid watch', async () => {
    await expectRefused(await reg.fetch('/trpc/executions.watch?input=%7Bnope'), 400, 'BAD_REQUEST');
    await expectRefused(await reg.fetch(watchUrl({ id: 'not-a-uuid' })), 400, 'BAD_REQUEST');
  });

  it('still streams for a caller who may watch', async () => {
    const res = await reg.fetch(watchUrl({ id: executionId }), { headers: { accept: 'text/event-stream' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await res.body?.cancel();
  });

  it('makes watchExecution reject with the SwarmError of the refusal', async () => {
    for (const [token, code] of [
      ['swt_nope', 'UNAUTHORIZED'],
      [otherTenant, 'NOT_FOUND'],
    ] as const) {
      const err = (await reg
        .client(token)
        .watchExecution(executionId, () => {})
        .catch((e: SwarmError) => e)) as SwarmError;
      expect(err.code).toBe(code);
      expect(err.status).toBe(code === 'NOT_FOUND' ? 404 : 401);
    }
  });
});
