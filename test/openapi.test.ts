/**
 * GET /openapi.json cannot drift from the routes: it is a valid OpenAPI 3.1 document,
 * it documents exactly the routes the registry registered (tRPC aside), and every
 * status it documents is produced by a real call whose body matches the documented schema.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registeredRoutes } from '../packages/server/src/http/app.js';
import { type RestSchemaName, openApiPath, restSchemas } from '../packages/server/src/http/openapi.js';
import { type TestRegistry, bundleBytes, sha256, startTestRegistry } from './support/registry.js';
import { trickle } from './support/trickle.js';

type Operation = { responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> };
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> };

const MAX_BUNDLE_BYTES = 64 * 1024;

describe('the OpenAPI document', () => {
  let reg: TestRegistry;
  let doc: Document;
  let orchestratorToken: string;
  let tenantToken: string;
  const v1 = bundleBytes('openapi-v1', 2048);
  beforeAll(async () => {
    // The fs store, so that /store/{key} is registered too.
    reg = await startTestRegistry({
      storage: 'fs',
      env: {
        LOG_LEVEL: 'warn',
        SWARM_MAX_BUNDLE_BYTES: String(MAX_BUNDLE_BYTES),
        // For the 429 and 408 cases: one upload per token at a time, a trickle is cut after 3 s.
        SWARM_MAX_UPLOADS_PER_TOKEN: '1',
        SWARM_UPLOAD_RATE_WINDOW_SECONDS: '3',
      },
    });
    const c = reg.client();
    await c.call(() => c.trpc.tenants.create.mutate({ slug: 'oa' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'oa', name: 'app' }));
    await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'oa', name: 'empty' }));
    orchestratorToken = (await c.call(() => c.trpc.tokens.create.mutate({ scope: 'orchestrator' }))).token;
    tenantToken = (await c.call(() => c.trpc.tokens.create.mutate({ scope: 'tenant:oa' }))).token;
    const res = await reg.fetch('/openapi.json', { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    doc = await res.json();
  });
  afterAll(() => reg?.close());

  const documented = () =>
    Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.entries(ops).map(([method, op]) => ({ key: `${method.toUpperCase()} ${p}`, op })),
    );

  it('is valid OpenAPI 3.1 (checked by @apidevtools/swagger-parser)', async () => {
    expect(doc.openapi).toBe('3.1.0');
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeTruthy();
  });

  it('documents every REST route the registry registered, and no other', () => {
    const live = registeredRoutes(reg.app)
      // Fastify answers HEAD for every GET by itself; tRPC procedures are typed by the SDK instead.
      .filter((r) => r.method !== 'HEAD' && !r.url.startsWith('/trpc'))
      .map((r) => `${r.method} ${openApiPath(r.url)}`);
    expect(live.length).toBeGreaterThan(5);
    expect(new Set(live)).toEqual(new Set(documented().map((d) => d.key)));
  });

  /** One call per documented status, producing exactly that status. Run in this order. */
  const upload = (body: Buffer, opts: { workflow?: string; token?: string | null; type?: string; hash?: string } = {}) =>
    reg.fetch(`/internal/bundles?workflow=${opts.workflow ?? 'oa/app'}&activate=true`, {
      method: 'POST',
      body: new Uint8Array(body),
      token: opts.token,
      headers: { 'content-type': opts.type ?? 'application/gzip', ...(opts.hash ? { 'x-bundle-sha256': opts.hash } : {}) },
    });
  const signedUrl = async () => {
    const url = new URL((await (await reg.fetch(`/internal/bundles/${sha256(v1)}`)).json()).url);
    return `${url.pathname}${url.search}`;
  };
  const cases: Record<string, () => Promise<Response>> = {
    'POST /internal/bundles 201': () => upload(v1),
    'POST /internal/bundles 200': () => upload(v1),
    'POST /internal/bundles 400': () => upload(Buffer.alloc(0)),
    'POST /internal/bundles 401': () => upload(v1, { token: null }),
    'POST /internal/bundles 403': () => upload(v1, { token: orchestratorToken }),
    'POST /internal/bundles 404': () => upload(v1, { workflow: 'oa/missing' }),
    'POST /internal/bundles 413': () => upload(bundleBytes('too-big', MAX_BUNDLE_BYTES + 1)),
    'POST /internal/bundles 415': () => upload(v1, { type: 'text/plain' }),
    'POST /internal/bundles 422': () => upload(bundleBytes('other'), { hash: sha256(v1) }),
    'POST /internal/bundles 408': async () => {
      const { answer } = trickle(reg, reg.adminToken, 'oa/app', { everyMs: 100, maxMs: 10_000, declared: 1000 });
      const { status, body } = await answer;
      return new Response(body, { status, headers: { 'content-type': 'application/json' } });
    },
    'POST /internal/bundles 429': async () => {
      // The token's one upload slot held by a trickle (seen in the registry's gauge); an upload meanwhile is refused.
      const held = trickle(reg, tenantToken, 'oa/app', { everyMs: 100, maxMs: 10_000, declared: 1000 });
      try {
        for (let i = 0; i < 200 && !/^swarm_bundle_uploads_in_progress 1$/m.test(await (await reg.fetch('/metrics')).text()); i++) {
          await new Promise((r) => setTimeout(r, 10));
        }
        return await upload(bundleBytes('other'), { token: tenantToken, hash: sha256(v1) });
      } finally {
        held.stop();
      }
    },
    'GET /internal/bundles/{hash} 200': () => reg.fetch(`/internal/bundles/${sha256(v1)}`),
    'GET /internal/bundles/{hash} 400': () => reg.fetch('/internal/bundles/not-a-hash'),
    'GET /internal/bundles/{hash} 401': () => reg.fetch(`/internal/bundles/${sha256(v1)}`, { token: null }),
    'GET /internal/bundles/{hash} 404': () => reg.fetch(`/internal/bundles/${'a'.repeat(64)}`),
    'GET /internal/workflow/{id}/active 200': () => reg.fetch('/internal/workflow/oa%2Fapp/active'),
    'GET /internal/workflow/{id}/active 400': () => reg.fetch('/internal/workflow/no-slash/active'),
    'GET /internal/workflow/{id}/active 401': () => reg.fetch('/internal/workflow/oa%2Fapp/active', { token: null }),
    'GET /internal/workflow/{id}/active 404': () => reg.fetch('/internal/workflow/oa%2Fempty/active'),
    'GET /metrics 200': () => reg.fetch('/metrics'),
    'GET /metrics 401': () => reg.fetch('/metrics', { token: null }),
    'GET /metrics 403': () => reg.fetch('/metrics', { token: tenantToken }),
    'GET /store/{key} 200': async () => reg.fetch(await signedUrl(), { token: null }),
    'GET /store/{key} 206': async () => reg.fetch(await signedUrl(), { token: null, headers: { range: 'bytes=0-9' } }),
    'GET /store/{key} 403': async () => reg.fetch((await signedUrl()).replace(/signature=[^&]+/, 'signature=forged'), { token: null }),
    'GET /store/{key} 404': async () => {
      const url = new URL(await reg.deps.store.driver.presignGet('blobs/sha256/no/such-object', 60));
      return reg.fetch(`${url.pathname}${url.search}`, { token: null });
    },
    'GET /store/{key} 416': async () => reg.fetch(await signedUrl(), { token: null, headers: { range: 'bytes=999999-' } }),
    'GET /openapi.json 200': () => reg.fetch('/openapi.json', { token: null }),
    'GET /healthz 200': () => reg.fetch('/healthz', { token: null }),
    'GET /healthz 503': async () => {
      // The store directory gone: the fs store's check fails. Put back right after.
      const store = path.join(reg.dataDir, 'store');
      await fs.rename(store, `${store}.away`);
      try {
        return await reg.fetch('/healthz', { token: null });
      } finally {
        await fs.rename(`${store}.away`, store);
      }
    },
  };

  it('has a call for every documented status (default aside), and no stale ones', () => {
    const statuses = documented().flatMap(({ key, op }) =>
      Object.keys(op.responses)
        .filter((s) => s !== 'default')
        .map((s) => `${key} ${s}`),
    );
    expect(Object.keys(cases).sort()).toEqual(statuses.sort());
  });

  it('answers each documented status when called, with a body of the documented schema', async () => {
    for (const [name, call] of Object.entries(cases)) {
      const [method, route, status] = name.split(' ') as [string, string, string];
      const res = await call();
      expect(res.status, name).toBe(Number(status));
      const content = doc.paths[route]![method.toLowerCase()]!.responses[status]!.content;
      const [mediaType, media] = Object.entries(content ?? {})[0] ?? [];
      if (!mediaType) {
        await res.body?.cancel();
        continue;
      }
      expect(res.headers.get('content-type'), name).toContain(mediaType);
      const schemaName = media?.schema?.$ref?.split('/').pop() as RestSchemaName | undefined;
      if (schemaName) {
        const parsed = restSchemas[schemaName].safeParse(await res.json());
        expect(parsed.error, `${name}: body does not match ${schemaName}`).toBeUndefined();
      } else {
        await res.arrayBuffer();
      }
    }
  });
});
