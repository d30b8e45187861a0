/**
 * Issue #12 §5: user-supplied text reaches the terminal only escaped. A version message
 * and an execution's failure reason carrying a bidi override, an ANSI colour sequence and a
 * newline are printed by `swarm versions`, `swarm executions list`, `executions show` and
 * `logs` as visible escapes, never as what the terminal would act on; `--json` prints them
 * exactly. In-process through buildProgram(), against a real registry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeForTerminal } from '../packages/sdk/src/cli/format.js';
import { insertEvent, updateExecution } from '../packages/server/src/db/queries/executions.js';
import { bundle, manifest } from '../packages/boot-agent/test/support/archives.js';
import { swarmInProcess } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

/** The message, `%E2%80%AEtxt.exe%1B[31mRED%0Aforged line` decoded. */
const HOSTILE = '\u202etxt.exe\u001b[31mRED\nforged line';
const ESCAPED = '\\u202etxt.exe\\x1b[31mRED\\nforged line';
/** What must never reach a terminal from a field: any control character but the newline ending a line, DEL, C1, bidi controls. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point
const ACTED_ON = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

let reg: TestRegistry;
let auth: string[];
let executionId: string;
beforeAll(async () => {
  reg = await startTestRegistry({ storage: 'fs', env: { LOG_LEVEL: 'warn' } });
  auth = ['--url', reg.url, '--token', reg.adminToken];
  const c = reg.client();
  await c.call(() => c.trpc.tenants.create.mutate({ slug: 'acme' }));
  await c.call(() => c.trpc.workflows.create.mutate({ tenant: 'acme', name: 'app' }));
  const b = bundle([manifest()]);
  const res = await reg.fetch(`/internal/bundles?workflow=acme/app&activate=true&message=${encodeURIComponent(HOSTILE)}`, {
    method: 'POST',
    body: b.bytes,
    headers: { 'content-type': 'application/gzip' },
  });
  expect(res.status).toBe(201);
  // An execution whose agent reported a hostile failure reason and hostile event data.
  const spawned = await c.call(() => c.trpc.executions.spawn.mutate({ workflow: 'acme/app' }));
  executionId = spawned.execution.id;
  await reg.deps.db.transaction(async (tx) => {
    await insertEvent(tx, { executionId, seq: 1, type: 'failed', data: { reason: HOSTILE } });
    // An ended execution holds no live credential (CHECK executions_ended_revoked).
    await updateExecution(tx, executionId, {
      status: 'failed',
      failureReason: HOSTILE,
      finishedAt: new Date(),
      agentTokenHash: null,
      agentSessionHash: null,
    });
  });
});
afterAll(() => reg?.close());

const swarm = async (args: string[]) => {
  const r = await swarmInProcess([...args, ...auth]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
};

describe('escapeForTerminal', () => {
  it.each([
    ['a bidi override and an isolate', 'a\u202eb\u2066c\u2069', 'a\\u202eb\\u2066c\\u2069'],
    ['C0 controls: ESC, CR, tab, NUL, BEL', '\u001b[2J\r\t\u0000\u0007', '\\x1b[2J\\r\\t\\x00\\x07'],
    ['DEL and a C1 control (CSI)', '\u007f\u009b31m', '\\x7f\\x9b31m'],
    ['newlines and Unicode line separators', 'a\nb\u2028c\u2029', 'a\\nb\\u2028c\\u2029'],
    ['a backslash, so an escape cannot be forged', 'C:\\x1b', 'C:\\\\x1b'],
    ['zero-width and invisible format characters', 'ac\u200bme\u2060\ufeff', 'ac\\u200bme\\u2060\\ufeff'],
    ['lone surrogates', 'a\ud800b\udc00', 'a\\ud800b\\udc00'],
    ['plain text and other Unicode (a surrogate pair too), untouched', 'déjà vu — 日本 ✓ 🙂', 'déjà vu — 日本 ✓ 🙂'],
  ])('%s', (_name, raw, shown) => {
    expect(escapeForTerminal(raw)).toBe(shown);
  });
});

describe('the CLI prints user-supplied fields escaped, and --json exact', () => {
  it('swarm versions: the message is escaped, on one line', async () => {
    const out = await swarm(['versions', 'acme/app']);
    expect(out).toContain(ESCAPED);
    expect(out).not.toMatch(ACTED_ON);
    expect(out.trimEnd().split('\n')).toHaveLength(2); // the header and the one version: no forged line
  });

  it('swarm versions --json: the message exactly', async () => {
    const [v] = JSON.parse(await swarm(['versions', 'acme/app', '--json']));
    expect(v.message).toBe(HOSTILE);
  });

  it('swarm executions list: the failure reason is escaped, on one line', async () => {
    const out = await swarm(['executions', 'list', 'acme/app']);
    expect(out).toContain(ESCAPED);
    expect(out).not.toMatch(ACTED_ON);
    expect(out.trimEnd().split('\n')).toHaveLength(2);
  });

  it('swarm executions list --json: the failure reason exactly', async () => {
    const [e] = JSON.parse(await swarm(['executions', 'list', 'acme/app', '--json']));
    expect(e.failureReason).toBe(HOSTILE);
  });

  it('swarm executions show and swarm logs: escaped', async () => {
    for (const args of [
      ['executions', 'show', executionId],
      ['logs', executionId],
    ]) {
      const out = await swarm(args);
      expect(out).toContain('\\u202etxt.exe');
      expect(out).not.toMatch(ACTED_ON);
      expect(out).not.toContain('\nforged line');
    }
  });
});
