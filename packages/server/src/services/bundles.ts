import type { Readable } from 'node:stream';
import { DEFAULT_BUNDLE_LIMITS } from '@swarm/sdk/bundle-rules';
import { parseStatement } from '@swarm/sdk/signing';
import { type Bundle, type UploadResult, toUploadResult } from '@swarm/sdk/contract';
import { RegistryError, notFound } from '../errors.js';
import { bundleVisibleTo, findWritableWorkflow } from './access.js';
import type { Deps, Principal } from './context.js';
import { type SignatureInput, checkSignature } from './signing.js';
import { registerStoredBundle } from './versions.js';

export async function getBundle(deps: Deps, p: Principal, input: { hash: string }): Promise<Bundle> {
  const b = await bundleVisibleTo(deps.db, p, input.hash);
  if (!b) throw notFound(`bundle ${input.hash}`);
  const { url, expiresAt } = await deps.store.signedUrl(input.hash, deps.config.urlTtlSeconds);
  return { hash: input.hash, size: b.size, treeDigest: b.treeDigest, url, expiresAt: expiresAt.toISOString() };
}

export async function bundleExists(deps: Deps, p: Principal, input: { hash: string }): Promise<boolean> {
  return (await bundleVisibleTo(deps.db, p, input.hash)) !== null;
}

export type UploadInput = {
  workflow: string;
  activate: boolean;
  message?: string | undefined;
  declaredHash?: string | undefined;
  /** The request's Content-Length, when it declared one: refused early if over the cap. */
  declaredSize?: number | undefined;
  /** The tenant key's signature (X-Bundle-Statement, -Signature, -Key-Id): checked before a byte is stored. */
  signature?: SignatureInput | undefined;
  body: Readable;
  onBytes?: (n: number) => void;
};

/**
 * Stores a bundle from a stream and registers it as a new version of a workflow.
 * The bytes reach their content address only once hashed, verified and checked against
 * the boot agent's bundle rules (a refusal is 422 naming the entry), and the
 * version row only once the bytes are stored, so a failure at any step leaves no
 * version without its bundle and no bundle under a wrong address.
 */
export async function uploadBundle(deps: Deps, p: Principal, input: UploadInput): Promise<UploadResult> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  const max = deps.config.maxBundleBytes;
  if (input.declaredSize !== undefined && input.declaredSize > max) {
    throw new RegistryError(
      'PAYLOAD_TOO_LARGE',
      `bundle of ${input.declaredSize} bytes exceeds the limit of ${max} bytes`,
      'raise SWARM_MAX_BUNDLE_BYTES on the registry, or make the bundle smaller',
    );
  }
  if (input.declaredSize === 0) throw new RegistryError('BAD_REQUEST', 'the request body is empty; send the bundle bytes');
  // The statement names the bundle's hash: a signature that cannot be accepted is refused before the upload.
  const signedHash = input.signature ? statementHash(input.signature) : undefined;
  if (input.signature && signedHash) await checkSignature(deps.db, wf, signedHash, input.signature);
  if (signedHash && input.declaredHash && signedHash !== input.declaredHash) {
    throw new RegistryError('BAD_REQUEST', `the statement is about bundle ${signedHash}, X-Bundle-Sha256 says ${input.declaredHash}`);
  }
  // No shortcut for bytes the store already has: whether another tenant stored them must not show.
  const ingested = await deps.store.ingest(input.body, {
    maxBytes: max,
    limits: DEFAULT_BUNDLE_LIMITS,
    declaredHash: input.declaredHash ?? signedHash,
    onBytes: input.onBytes,
  });
  const { version, created } = await registerStoredBundle(deps, p, wf.id, ingested, input);
  return toUploadResult(version, created);
}

function statementHash(s: SignatureInput): string {
  try {
    return parseStatement(Buffer.from(s.statement, 'base64')).bundleHash;
  } catch (err) {
    throw new RegistryError('BAD_REQUEST', `X-Bundle-Statement: ${(err as Error).message}`, 'sign with swarm push --sign, or swarm sign');
  }
}
