/**
 * The signing commands in-process against a real registry (PostgreSQL, fs store):
 * `swarm keys generate|add|list|revoke`, `swarm trust delegate`, `swarm push --sign`,
 * `swarm sign`, `swarm policy`, each with --json, and their refusals of bad input
 * (exit status 2, before any request).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inProcessCli } from './support/cli.js';
import { type TestRegistry, startTestRegistry } from './support/registry.js';

let reg: TestRegistry;
let work: string;
let auth: string[];
const at = (name: string) => path.join(work, name);
beforeAll(async () => {
  reg = await startTestRegistry({ storage: 'fs' });
  auth = ['--url', reg.url, '--token', reg.adminToken];
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-cli-signing-'));
  await fs.mkdir(at('app'));
  await fs.writeFile(at('app/main.sh'), 'echo signed\n');
});
afterAll(async () => {
  await reg?.close();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const { swarm, json } = inProcessCli(() => auth);

describe('signing commands', () => {
  let ciKeyId: string;

  it('generates key pairs: the private half 0600, and refuses to overwrite one', async () => {
    const root = await json(['keys', 'generate', at('root')]);
    expect(root.keyId).toMatch(/^[0-9a-f]{64}$/);
    const ci = await json(['keys', 'generate', at('ci')]);
    ciKeyId = ci.keyId;
    expect((await fs.stat(at('ci.key'))).mode & 0o777).toBe(0o600);
    expect(await fs.readFile(at('ci.pub'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const again = await swarm(['keys', 'generate', at('ci')]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('exists already');
  });

  it('delegates with the root, adds and lists the key', async () => {
    const d = await json([
      'trust',
      'delegate',
      '--root',
      at('root.key'),
      '--tenant',
      'acme',
      '--key',
      at('ci.pub'),
      '-o',
      at('ci.delegation.json'),
    ]);
    expect(d).toMatchObject({ tenant: 'acme', keyId: ciKeyId });
    // 90 days by default.
    expect(Date.parse(d.notAfter) - Date.now()).toBeGreaterThan(89 * 86_400_000);
    await json(['tenants', 'create', 'acme']);
    expect(await json(['keys', 'add', 'acme', at('ci.delegation.json')])).toMatchObject({ created: true, key: { keyId: ciKeyId } });
    expect(await json(['keys', 'list', 'acme'])).toEqual([expect.objectContaining({ keyId: ciKeyId, revokedAt: null })]);
  });

  it('pushes signed under an enforcing policy; swarm versions shows the key', async () => {
    expect(await json(['policy', 'acme', '--signatures', 'enforce'])).toEqual({ tenant: 'acme', signatures: 'enforce' });
    expect(await json(['policy', 'acme'])).toEqual({ tenant: 'acme', signatures: 'enforce' });
    await json(['workflows', 'create', 'acme/app']);
    const unsigned = await swarm(['push', at('app'), '-w', 'acme/app', '--activate']);
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toContain('is unsigned, and tenant "acme" enforces signatures');
    const pushed = await swarm(['push', at('app'), '-w', 'acme/app', '--activate', '--sign', at('ci.key')]);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toMatch(/, signed — active\n$/);
    const table = await swarm(['versions', 'acme/app']);
    expect(table.stdout).toContain(ciKeyId.slice(0, 12));
  });

  it('signs an already pushed version with swarm sign', async () => {
    await json(['policy', 'acme', '--signatures', 'off']);
    await fs.writeFile(at('app/main.sh'), 'echo signed later\n');
    expect(await json(['push', at('app'), '-w', 'acme/app'])).toMatchObject({ version: 2 });
    const signed = await json(['sign', 'acme/app', '2', '--key', at('ci.key')]);
    expect(signed).toMatchObject({ version: 2, signature: { keyId: ciKeyId, keyRevoked: false } });
  });

  it('revokes the key', async () => {
    expect(await json(['keys', 'revoke', 'acme', ciKeyId])).toMatchObject({ keyId: ciKeyId, revokedAt: expect.any(String) });
    const table = await swarm(['versions', 'acme/app']);
    expect(table.stdout).toContain('(revoked)');
  });

  it.each([
    [['keys', 'revoke', 'acme', 'nothex'], 'key id must be 64 lowercase hex'],
    [['keys', 'add', 'Not A Slug', 'x.json'], 'tenant must be a tenant slug'],
    [['keys', 'add', 'acme', '/nonexistent/d.json'], 'cannot read delegation'],
    [['push', '/nonexistent', '-w', 'acme/app', '--sign', '/nonexistent/ci.key'], 'cannot read signing key'],
    [
      ['trust', 'delegate', '--root', '/nonexistent/r.key', '--tenant', 'acme', '--key', 'x.pub', '-o', 'x.json', '--expires', '3 weeks'],
      '--expires',
    ],
    [['spawn', 'acme/app', '--driver', 'qemu', '--trust-root', 'root.pub'], '--trust-root is for the process driver'],
  ])('refuses %j with exit status 2 before any request', async (args, message) => {
    const r = await swarm(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('refuses a PRIVATE key as --trust-root, with a hint, before any request', async () => {
    const r = await swarm(['spawn', 'acme/app', '--trust-root', at('root.key')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is a PRIVATE key');
    expect(r.stderr).toContain('.pub file');
  });

  it('refuses a file that is not a delegation', async () => {
    await fs.writeFile(at('junk.json'), '{"payload": 1}');
    const r = await swarm(['keys', 'add', 'acme', at('junk.json')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is not a delegation');
  });
});
