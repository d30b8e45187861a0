/** Signed bundles in the API (docs/signing.md): tenants' signing keys, versions' signatures, signature policy. */
import { z } from 'zod';
import { signingMaterial } from './metadata.js';
import { tenantSlug, timestamp, versionNumber, workflowRef } from './names.js';
import { signaturePolicy } from './vocabulary.js';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex (a key id: sha256 of the SPKI DER)');
const base64 = z
  .string()
  .min(1)
  .max(16_384)
  .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64');

/** The root's delegation of one tenant key, as `swarm trust delegate` writes it. */
export const delegation = signingMaterial.shape.delegation;
export type Delegation = z.infer<typeof delegation>;

/** A version's signature as the tenant sends it: the statement's canonical bytes (base64), the signature, the key id. */
export const signatureInput = z.object({ statement: base64, signature: base64, keyId: hex64 });
export type SignatureInput = z.infer<typeof signatureInput>;

export const signingKey = z.object({
  tenant: z.string(),
  keyId: z.string(),
  notAfter: timestamp,
  createdBy: z.string(),
  createdAt: timestamp,
  revokedAt: timestamp.nullable(),
});
export type SigningKey = z.infer<typeof signingKey>;

export const addSigningKeyInput = z.object({ tenant: tenantSlug, delegation });
export const tenantInput = z.object({ tenant: tenantSlug });
export const revokeSigningKeyInput = z.object({ tenant: tenantSlug, keyId: hex64 });
export const setSignaturePolicyInput = z.object({ tenant: tenantSlug, signatures: signaturePolicy });
export const signaturePolicyOutput = z.object({ tenant: z.string(), signatures: signaturePolicy });
export const signVersionInput = z.object({ workflow: workflowRef, version: versionNumber }).extend(signatureInput.shape);
