/**
 * Once the agent has read its metadata, nothing in the VM needs the metadata service
 * again, and the workload must not reach it: under Firecracker's MMDS, which answers every
 * session, a bootstrap token the agent could not exchange (registry unreachable) would stay
 * readable until it expires. So an agent running as root adds a blackhole route for the
 * service's address before anything else happens. Only for a link-local IPv4 address
 * (169.254.0.0/16, where MMDS lives): never for a loopback or routable address, which
 * would be a host's own network under the process driver.
 */
import { builtin } from './builtins.js';

/** What happened; null where sealing does not apply (no metadata service, not root, not a link-local address). */
export type SealOutcome = { sealed: true; address: string } | { sealed: false; address: string; why: string } | null;

export function sealMetadataService(mmdsUrl: string, apiUrl: string | undefined): SealOutcome {
  if (mmdsUrl === 'off' || process.getuid?.() !== 0) return null;
  const address = new URL(mmdsUrl).hostname;
  if (!/^169\.254\.\d{1,3}\.\d{1,3}$/.test(address)) return null;
  if (apiUrl && new URL(apiUrl).hostname === address) return { sealed: false, address, why: 'the registry is reached at that address too' };
  const r = builtin('node:child_process').spawnSync('ip', ['route', 'add', 'blackhole', `${address}/32`], {
    encoding: 'utf8',
    timeout: 5000,
  });
  // "File exists": an earlier run sealed it already.
  if (r.status === 0 || /exists/i.test(r.stderr ?? '')) return { sealed: true, address };
  return { sealed: false, address, why: r.error ? r.error.message : (r.stderr || `ip exited ${r.status}`).trim() };
}
