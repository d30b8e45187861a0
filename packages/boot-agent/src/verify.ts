/**
 * Signed bundles inside the VM (docs/signing.md). With a trust root — the platform root's
 * public key, from the image (/opt/swarm/trust/root.pub) or the agent's own flag or
 * environment, never from the metadata — the agent runs a bundle only when its signature
 * chain verifies: the delegation under the root, for the expected tenant and unexpired;
 * the statement under the delegated key, naming the expected tenant, workflow and the
 * exact bundle hash about to run. The expected workflow is the orchestrator's
 * (`expectedWorkflow`, or the `workflow` it asked to resolve), not the registry's answer.
 * Anything else is `untrusted` (exit 67), before anything is fetched, linked or unpacked.
 */
import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import type { VmMetadata } from '@swarm/sdk/metadata';
import { type BundleStatement, SigningError, publicKeyFrom, verifyBundleSignature } from '@swarm/sdk/signing';
import { AgentError } from './errors.js';

const untrusted = (message: string) => new AgentError('untrusted', message);

/**
 * The trust root, or null without one. `path` is the agent's SWARM_TRUST_ROOT setting;
 * `explicit` whether it was given (flag or environment) rather than the image default:
 * a root that was asked for and cannot be read fails closed, a missing default means
 * this VM has none.
 */
export function loadTrustRoot(path: string, explicit: boolean): KeyObject | null {
  let pem: string;
  try {
    pem = fs.readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!explicit && code === 'ENOENT') return null;
    throw untrusted(`cannot read the trust root ${path}: ${code ?? (err as Error).message}`);
  }
  try {
    return publicKeyFrom(pem, `the trust root ${path}`);
  } catch (err) {
    throw untrusted((err as Error).message);
  }
}

/**
 * The tenant and workflow this VM runs for, as the orchestrator wrote them: with a bundle
 * in the metadata only `expectedWorkflow` (the registry's `workflow` is never trusted);
 * without one, the `workflow` this agent itself asked the registry to resolve.
 */
function expectedWorkflow(metadata: VmMetadata): { tenant: string; workflow: string } {
  const ref = metadata.bundle ? metadata.expectedWorkflow : metadata.workflow;
  const parts = ref?.split('/');
  if (parts?.length !== 2) {
    throw untrusted(
      'the metadata does not name the workflow to run as "tenant/name" (expectedWorkflow): nothing to check the signature against; spawn by tenant/name, not by workflow id',
    );
  }
  return { tenant: parts[0]!, workflow: parts[1]! };
}

/**
 * Checks the bundle about to run (by its expected hash: the download is checked against
 * the same hash before use) against the signature material in the metadata. Returns the
 * verified statement (its tree digest is the one a warm boot may trust).
 */
export function verifyBundle(
  root: KeyObject,
  metadata: VmMetadata,
  bundle: { hash: string; treeDigest?: string | undefined },
): BundleStatement {
  if (!metadata.signing) {
    throw untrusted(`bundle ${bundle.hash.slice(0, 12)} is unsigned (no signing material in the metadata) and this VM has a trust root`);
  }
  const expected = expectedWorkflow(metadata);
  try {
    return verifyBundleSignature(root, metadata.signing, { ...expected, bundleHash: bundle.hash, treeDigest: bundle.treeDigest });
  } catch (err) {
    if (err instanceof SigningError) throw untrusted(`${err.failure}: ${err.message}`);
    throw err;
  }
}
