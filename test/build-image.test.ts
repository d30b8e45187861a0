/**
 * scripts/vm/build-image.sh: its --trust-root check refuses a private key (before anything
 * is built); its /init's kernel command line parsing — the `parse_cmdline` function cut out
 * of the script's /init and run by /bin/sh — refuses swarm.trust_root, swarm.agent_token
 * and swarm.boot_print in any spelling; and an image whose start-up snapshot could not be
 * built is not taken as up to date by the next build (a real build, a few seconds).
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const script = path.resolve(import.meta.dirname, '../scripts/vm/build-image.sh');
let work: string;

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'swarm-build-image-'));
});
afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

async function buildImage(args: string[]) {
  return run('bash', [script, ...args], { timeout: 30_000 }).then(
    (r) => ({ code: 0, ...r }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

describe('build-image.sh --trust-root', () => {
  it('refuses a PRIVATE key, with a hint, before building anything', async () => {
    const k = generateKeyPairSync('ed25519');
    const file = path.join(work, 'root.key');
    await fs.writeFile(file, k.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const out = path.join(work, 'image');
    const r = await buildImage(['--trust-root', file, out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is a PRIVATE key');
    expect(r.stderr).toContain('public key (the .pub file)');
    await expect(fs.access(out)).rejects.toThrow();
  });

  it('refuses a PEM that is not a PUBLIC KEY block', async () => {
    const k = generateKeyPairSync('ed25519');
    const file = path.join(work, 'root.cert');
    await fs.writeFile(file, (k.publicKey.export({ type: 'spki', format: 'pem' }) as string).replaceAll('PUBLIC KEY', 'CERTIFICATE'));
    const r = await buildImage(['--trust-root', file, path.join(work, 'image2')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is not an Ed25519 public key');
  });
});

describe("/init's kernel command line", () => {
  /** Runs the image's parse_cmdline on this command line; the SWARM_* environment it exports, and what it printed. */
  async function parse(cmdline: string) {
    const text = await fs.readFile(script, 'utf8');
    const fn = text.match(/^parse_cmdline\(\) \{\n[\s\S]*?\n\}\n/m)?.[0];
    expect(fn, 'parse_cmdline in /init').toBeDefined();
    const file = path.join(work, 'cmdline');
    await fs.writeFile(file, `${cmdline}\n`);
    const r = await run('sh', ['-c', `${fn}\nparse_cmdline "$1"\necho "--env--"\nenv`, 'sh', file], { env: { PATH: process.env.PATH } });
    const [said, env] = r.stdout.split('--env--\n') as [string, string];
    const vars = Object.fromEntries(
      env
        .split('\n')
        .filter((l) => l.startsWith('SWARM_'))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    return { said, vars };
  }

  it('exports swarm.<name>=<value> as SWARM_<NAME>', async () => {
    const { vars } = await parse('console=ttyS0 swarm.fetch_attempts=2 swarm.Log_Level=debug');
    expect(vars).toEqual({ SWARM_FETCH_ATTEMPTS: '2', SWARM_LOG_LEVEL: 'debug' });
  });

  it.each([
    'swarm.trust_root=/x',
    'swarm.TRUST_ROOT=/x',
    'swarm.Trust_Root=/x',
    'swarm.agent_token=t',
    'swarm.AGENT_TOKEN=t',
    // boot.sh would print its flags and exit 0: a boot that ran nothing but looks like a success.
    'swarm.boot_print=flags',
    'swarm.BOOT_PRINT=snapshot-id',
  ])('refuses %s in any case: nothing exported, and says so', async (arg) => {
    const { said, vars } = await parse(`swarm.fetch_attempts=2 ${arg}`);
    expect(vars).toEqual({ SWARM_FETCH_ATTEMPTS: '2' });
    expect(said).toMatch(/init: ignoring swarm\.(trust_root|agent_token|boot_print)/);
  });
});

describe('an image built without its start-up snapshot', () => {
  /** The names under /opt/swarm in an image's read-only root drive (debugfs, from e2fsprogs like mkfs.ext4; in sbin). */
  async function optSwarm(out: string): Promise<string> {
    const env = { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
    return (await run('debugfs', ['-R', 'ls /opt/swarm', path.join(out, 'root.ext4')], { env })).stdout;
  }

  it('is built again by the next build, which makes the snapshot', { timeout: 600_000 }, async () => {
    const out = path.join(work, 'no-snapshot');
    await fs.mkdir(path.join(out, 'deb'), { recursive: true });
    // The kernel package the main image downloaded, once that build unpacked it (so not
    // half-downloaded by a build running beside this one): saves a download.
    const main = path.resolve(import.meta.dirname, '../.swarm/vm');
    const unpacked = await fs.readFile(path.join(main, 'kernel-pkg.deb'), 'utf8').catch(() => '');
    if (unpacked.trim()) await fs.copyFile(path.join(main, 'deb', unpacked.trim()), path.join(out, 'deb', unpacked.trim()));
    // The snapshot step fails: its log cannot be written (a directory stands where the file goes).
    await fs.mkdir(path.join(out, 'snapshot.log'));
    const build = () => run('bash', [script, out], { timeout: 300_000 });

    const failed = await build();
    expect(failed.stderr).toContain('building the start-up snapshot failed');
    expect(failed.stderr).toContain('the next build tries again');
    const withoutBlob = await optSwarm(out);
    expect(withoutBlob).toContain('boot-agent.mjs');
    expect(withoutBlob).not.toContain('boot-agent.blob');
    expect(await fs.readFile(path.join(out, 'image.inputs'), 'utf8')).toMatch(/^snapshot failed: see .*snapshot\.log$/m);

    await fs.rmdir(path.join(out, 'snapshot.log'));
    const again = await build();
    expect(again.stderr).not.toContain('up to date');
    expect(again.stderr).not.toContain('snapshot failed');
    expect(await optSwarm(out)).toContain('boot-agent.blob');
    expect(await fs.readFile(path.join(out, 'image.inputs'), 'utf8')).not.toContain('snapshot failed');

    expect((await build()).stderr).toContain('up to date');
  });
});
