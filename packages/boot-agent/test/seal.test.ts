/**
 * The agent seals the metadata service after reading it (a blackhole route), so that under
 * Firecracker's MMDS, which answers every session, an unexchanged bootstrap token cannot be
 * read by the workload. Run for real as root inside a network namespace of its own
 * (`unshare -n`), so no route of this machine is touched; the qemu VM test sees it in a VM.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const seal = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/seal.ts');

/** Calls sealMetadataService in a fresh network namespace; its outcome and the routes after. */
function inNamespace(mmdsUrl: string, apiUrl?: string): { outcome: unknown; routes: string } {
  const script = `
    const { sealMetadataService } = await import(${JSON.stringify(seal)});
    const { execFileSync } = await import('node:child_process');
    const outcome = sealMetadataService(${JSON.stringify(mmdsUrl)}, ${JSON.stringify(apiUrl)});
    const routes = execFileSync('ip', ['route', 'show', 'table', 'main'], { encoding: 'utf8' });
    console.log(JSON.stringify({ outcome, routes }));`;
  const out = execFileSync('unshare', ['-n', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe.skipIf(process.getuid?.() !== 0)('sealing the metadata service (as root, in its own network namespace)', () => {
  it('blackholes a link-local metadata address', () => {
    const { outcome, routes } = inNamespace('http://169.254.169.254', 'http://169.254.169.21:80');
    expect(outcome).toEqual({ sealed: true, address: '169.254.169.254' });
    expect(routes).toMatch(/^blackhole 169\.254\.169\.254\b/m);
  });

  it('never touches a loopback address (the process driver serves metadata on the host)', () => {
    const { outcome, routes } = inNamespace('http://127.0.0.1:8111');
    expect(outcome).toBeNull();
    expect(routes).not.toMatch(/blackhole/);
  });

  it('leaves the address alone when the registry is reached there too, and says so', () => {
    const { outcome, routes } = inNamespace('http://169.254.169.254', 'http://169.254.169.254:8080');
    expect(outcome).toMatchObject({ sealed: false, address: '169.254.169.254' });
    expect(routes).not.toMatch(/blackhole/);
  });

  it('does nothing without a metadata service', () => {
    expect(inNamespace('off').outcome).toBeNull();
  });
});
