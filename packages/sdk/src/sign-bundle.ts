/**
 * Signing a bundle file for push (`swarm push --sign`, `swarm sign`): the statement
 * names the tenant, the workflow, the archive's sha256 and its tree digest (from the one
 * archive walk of @swarm/sdk/bundle-rules, as the registry computes it at upload), and
 * is signed with the tenant's key. The private key stays in this process.
 */
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { CHECK_ONLY, DEFAULT_BUNDLE_LIMITS, walkArchive } from './bundle-rules/index.js';
import type { SignatureInput } from './contract/index.js';
import { SwarmError } from './errors.js';
import { sha256File } from './hash.js';
import { privateKeyFrom, signStatement } from './signing/index.js';

/** `tenant/name` → its parts; a signature names the workflow, so an id will not do. */
export function splitWorkflowRef(ref: string): { tenant: string; workflow: string } {
  const [tenant, workflow, ...rest] = ref.split('/');
  if (!tenant || !workflow || rest.length) {
    throw new SwarmError('INVALID_INPUT', `signing needs the workflow as "tenant/name", not "${ref}"`);
  }
  return { tenant, workflow };
}

/** Reads a PKCS#8 PEM private key (e.g. `swarm keys generate`'s `<name>.key`). */
export async function readSigningKey(file: string): Promise<KeyObject> {
  const pem = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new SwarmError(
      'INVALID_INPUT',
      `cannot read signing key ${file}: ${err.code ?? err.message}`,
      'create one: swarm keys generate <name>',
    );
  });
  try {
    return privateKeyFrom(pem, `signing key ${file}`);
  } catch (err) {
    throw new SwarmError('INVALID_INPUT', (err as Error).message, 'a signing key is the PKCS#8 PEM file swarm keys generate wrote');
  }
}

/** The bundle file's sha256 and tree digest. */
export async function bundleDigests(file: string): Promise<{ hash: string; treeDigest: string | undefined }> {
  const hash = await sha256File(file);
  const walked = await walkArchive(createReadStream(file), DEFAULT_BUNDLE_LIMITS, CHECK_ONLY, { treeDigest: true });
  return { hash, treeDigest: walked.treeDigest };
}

/** Signs the statement about a bundle file for `workflow` ("tenant/name"). */
export async function signBundleFile(file: string, key: KeyObject, workflow: string): Promise<SignatureInput & { bundleHash: string }> {
  const ref = splitWorkflowRef(workflow);
  const { hash, treeDigest } = await bundleDigests(file);
  return { ...signStatement(key, { ...ref, bundleHash: hash, treeDigest }), bundleHash: hash };
}
