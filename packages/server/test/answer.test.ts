/**
 * tRPC answers written by serializers compiled from the output schemas (src/trpc/answer.ts):
 * the same text as zod's parse + JSON.stringify, fields the contract does not name left out,
 * schemas JSON Schema cannot express left to zod, and the tests' cross-check catching a
 * difference. The whole suite runs with that cross-check on (vitest.config.ts), so every
 * answer any test gets was also compared with zod's.
 */
import { activeVersion, execution, workflow } from '@swarm/sdk/contract';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { checked, compileAnswer, parsedAnswer } from '../src/trpc/answer.js';
import { createApi } from '../src/trpc/router.js';

const uuid = () => crypto.randomUUID();
const hex = (c: string) => c.repeat(64);
const b64 = 'c2lnbmVk';
const resolved = {
  workflowId: uuid(),
  tenantId: uuid(),
  versionId: uuid(),
  version: 3,
  bundleHash: hex('a'),
  size: 4096,
  treeDigest: null,
  bundleUrl: 'http://127.0.0.1:9000/swarm/bundles/aa?X-Amz-Signature=ab%2Fcd&x="quoted"\\',
  expiresAt: '2026-11-29T21:00:00.000Z',
};

describe('compiled answers', () => {
  const write = compileAnswer(activeVersion)!;

  it('write what zod writes: nulls, optional objects absent and present, characters JSON escapes', () => {
    const signed = {
      ...resolved,
      treeDigest: hex('b'),
      signing: { statement: b64, signature: b64, keyId: hex('c'), delegation: { payload: b64, signature: b64, rootKeyId: hex('d') } },
    };
    for (const value of [resolved, signed]) {
      expect(write(value)).toBe(parsedAnswer(activeVersion)(value));
      expect(JSON.parse(write(value))).toEqual({ result: { data: value } });
    }
  });

  it('leave out what the contract does not name, at the top and nested', () => {
    const leaky = {
      ...resolved,
      agentTokenHash: 'do-not-send',
      signing: {
        statement: b64,
        signature: b64,
        keyId: hex('c'),
        delegation: { payload: b64, signature: b64, rootKeyId: hex('d'), privateKey: 'do-not-send' },
      },
    };
    const text = write(leaky);
    expect(text).not.toContain('do-not-send');
    expect(text).toBe(parsedAnswer(activeVersion)(leaky));
  });

  it('write nullable objects and enums as zod does (a workflow, an execution)', () => {
    const wf = {
      id: uuid(),
      tenantId: uuid(),
      tenant: 'acme',
      name: 'app',
      activeVersion: null,
      canary: { version: 2, weight: 10 },
      timeoutSeconds: null,
      createdAt: '2026-11-29T21:00:00.000Z',
    };
    for (const value of [wf, { ...wf, canary: null, activeVersion: 1 }]) {
      expect(compileAnswer(workflow)!(value)).toBe(parsedAnswer(workflow)(value));
    }
    expect(compileAnswer(execution)).toBeDefined();
  });

  it('leave a schema with a transform to zod', () => {
    expect(compileAnswer(z.object({ n: z.string().transform((s) => s.length) }))).toBeUndefined();
  });

  it("every procedure's answers are compiled (none needs zod's parse)", () => {
    const api = createApi({} as never);
    const byZod = [...api.procedures].filter(([, p]) => !compileAnswer(p.output)).map(([path]) => path);
    expect(byZod).toEqual([]);
    expect(api.procedures.size).toBeGreaterThan(30);
  });
});

describe('the cross-check (SWARM_CHECK_ANSWERS)', () => {
  it('passes an answer both write alike', () => {
    const write = checked('versions.active', compileAnswer(activeVersion)!, activeVersion);
    expect(JSON.parse(write(resolved)).result.data).toEqual(resolved);
  });

  it('fails an answer the compiled writer coerces but the schema refuses', () => {
    const write = checked('versions.active', compileAnswer(activeVersion)!, activeVersion);
    // A float where the contract says integer: fast-json-stringify would write 2, zod refuses it.
    expect(() => write({ ...resolved, version: 2.5 })).toThrow();
  });

  it('passes the same JSON with properties in another order', () => {
    const schema = z.object({ a: z.string(), b: z.string() });
    const write = checked('x.y', () => '{"result":{"data":{"b":"2","a":"1"}}}', schema);
    expect(write({ a: '1', b: '2' })).toBe('{"result":{"data":{"b":"2","a":"1"}}}');
  });

  it('fails when the two hold different JSON', () => {
    const schema = z.object({ a: z.string() });
    const write = checked('x.y', () => '{"result":{"data":{"a":"other"}}}', schema);
    expect(() => write({ a: 'value' })).toThrow(/the answer of x\.y differs from its schema's/);
  });
});
