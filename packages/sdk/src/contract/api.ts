/**
 * The registry's API shapes: what every procedure and REST route accepts and returns.
 * Plain JSON only (ISO-8601 strings for time), so the SDK's types never mention the
 * server's database or storage libraries.
 */
import { z } from 'zod';
import { bundleHash, commitMessage, tenantSlug, timestamp, tokenScope, uuid, versionNumber, workflowName, workflowRef } from './names.js';
import { signingMaterial } from './metadata.js';
import { signatureInput } from './signing.js';

/**
 * The digest of what a bundle unpacks to (@swarm/sdk/bundle-rules' treeDigest), computed
 * by the registry at upload; null for a bundle stored before digests existed, until its
 * bytes are uploaded again.
 */
const treeDigest = bundleHash.nullable();

export const tenant = z.object({ id: uuid, slug: tenantSlug, createdAt: timestamp });
export type Tenant = z.infer<typeof tenant>;

export const workflow = z.object({
  id: uuid,
  tenantId: uuid,
  tenant: tenantSlug,
  name: workflowName,
  /** The active version's number, or null before the first activation. */
  activeVersion: versionNumber.nullable(),
  /** A canary taking `weight` percent of spawns, if one is set. */
  canary: z.object({ version: versionNumber, weight: z.number().int().min(1).max(99) }).nullable(),
  /** Default timeout of its executions, in seconds (a spawn may give its own); null: none. */
  timeoutSeconds: z.number().int().nullable(),
  createdAt: timestamp,
});
export type Workflow = z.infer<typeof workflow>;

export const workflowVersion = z.object({
  id: uuid,
  workflowId: uuid,
  version: versionNumber,
  bundleHash,
  size: z.number().int().nonnegative(),
  treeDigest,
  message: z.string().nullable(),
  /** Name of the token that registered it. */
  createdBy: z.string(),
  createdAt: timestamp,
  active: z.boolean(),
  canary: z.boolean(),
  /** Set when gc retired the version; its bundle may be gone from the store. */
  prunedAt: timestamp.nullable(),
  /** The tenant key that signed it (docs/signing.md); null: unsigned. */
  signature: z.object({ keyId: z.string(), keyRevoked: z.boolean() }).nullable(),
});
export type WorkflowVersion = z.infer<typeof workflowVersion>;

export const bundle = z.object({
  hash: bundleHash,
  size: z.number().int().nonnegative(),
  treeDigest,
  /** A time-limited download URL: presigned for the store, or signed by the registry. */
  url: z.url(),
  expiresAt: timestamp,
});
export type Bundle = z.infer<typeof bundle>;

/** What the orchestrator needs to boot a workflow: its active version and where the bytes are. */
export const activeVersion = z.object({
  workflowId: uuid,
  tenantId: uuid,
  versionId: uuid,
  version: versionNumber,
  bundleHash,
  size: z.number().int().nonnegative(),
  treeDigest,
  bundleUrl: z.url(),
  expiresAt: timestamp,
  /** The version's signature material, when signed (docs/signing.md): an agent resolving by itself verifies it. */
  signing: z.optional(signingMaterial),
});
export type ActiveVersion = z.infer<typeof activeVersion>;

/** Answer of `POST /internal/bundles` and of `swarm push`. */
export const uploadResult = z.object({
  workflowId: uuid,
  versionId: uuid,
  version: versionNumber,
  bundleHash,
  size: z.number().int().nonnegative(),
  treeDigest,
  /** False when the workflow's newest version already had these bytes (idempotent retry). */
  created: z.boolean(),
  active: z.boolean(),
});
export type UploadResult = z.infer<typeof uploadResult>;

/** An upload's answer from the version it registered (or found already registered). */
export const toUploadResult = (v: WorkflowVersion, created: boolean): UploadResult => ({
  workflowId: v.workflowId,
  versionId: v.id,
  version: v.version,
  bundleHash: v.bundleHash,
  size: v.size,
  treeDigest: v.treeDigest,
  created,
  active: v.active,
});

export const apiToken = z.object({
  id: uuid,
  name: z.string(),
  scope: tokenScope,
  createdAt: timestamp,
  revokedAt: timestamp.nullable(),
});
export type ApiToken = z.infer<typeof apiToken>;

/** A freshly minted token: the plaintext is returned this once and stored only hashed. */
export const createdApiToken = apiToken.extend({ token: z.string() });
export type CreatedApiToken = z.infer<typeof createdApiToken>;

// ---- inputs ----------------------------------------------------------------

export const tokenName = z.string().min(1).max(100);

export const inputs = {
  tenantCreate: z.object({ slug: tenantSlug }),
  tenantGet: z.object({ tenant: z.union([uuid, tenantSlug]) }),
  workflowCreate: z.object({ tenant: z.union([uuid, tenantSlug]), name: workflowName }),
  workflowGet: z.object({ workflow: workflowRef }),
  /** Settings of a workflow (#16): null clears one. */
  workflowSet: z.object({
    workflow: workflowRef,
    timeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 3600)
      .nullable(),
  }),
  workflowList: z.object({ tenant: z.union([uuid, tenantSlug]) }),
  bundleGet: z.object({ hash: bundleHash }),
  versionRegister: z.object({
    workflow: workflowRef,
    bundleHash,
    /** Precondition: fail unless the bundle's hash is this one (guards a client's stale read). */
    expectedHash: bundleHash.optional(),
    message: commitMessage.optional(),
    activate: z.boolean().default(false),
    /** The tenant key's signature of the bundle (docs/signing.md): checked, then stored with the version. */
    signature: signatureInput.optional(),
  }),
  versionActivate: z.object({
    workflow: workflowRef,
    version: versionNumber,
    /** Compare-and-set: fail with CONFLICT unless this is the active version (null: none active). */
    expectedActiveVersion: versionNumber.nullable().optional(),
    message: commitMessage.optional(),
  }),
  tokenCreate: z.object({ scope: tokenScope, name: tokenName.optional() }),
  tokenRevoke: z.object({ id: uuid }),
} as const;

/** Query string of `POST /internal/bundles`; an unknown parameter is refused, not ignored. */
export const uploadQuery = z.strictObject({
  workflow: workflowRef,
  activate: z
    .enum(['true', 'false', '1', '0'])
    .optional()
    .transform((v) => v === 'true' || v === '1'),
  message: commitMessage.optional(),
});
