/**
 * The VM metadata document: everything a boot agent needs to fetch, verify and run a
 * workflow. The orchestrator renders it (as Firecracker MMDS content or a JSON file);
 * the boot agent reads it from flags, environment, MMDS or that file, and validates it
 * with this schema. Secrets travel only here, never inside a bundle.
 */
import { z } from 'zod';
import { bundleHash, uuid, workflowRef } from './names.js';

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

const base64 = z
  .string()
  .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64')
  .max(16_384);
const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex');
/** A version's signature material (@swarm/sdk/signing's SignatureMaterial). */
export const signingMaterial = z.object({
  statement: base64,
  signature: base64,
  keyId: hex64,
  delegation: z.object({ payload: base64, signature: base64, rootKeyId: hex64 }),
});

/** Environment variable names a secret may take. */
export const secretName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be a valid environment variable name');

export const vmMetadata = z
  .object({
    bundle: z
      .object({
        url: httpUrl,
        hash: bundleHash,
        /** When known, the download must be exactly this long. */
        size: z.number().int().nonnegative().optional(),
      })
      .optional(),
    /** With no bundle: resolve the active version of this workflow through the API. */
    workflow: workflowRef.optional(),
    execution: z.object({ id: uuid, agentToken: z.string().min(1) }).optional(),
    /** The registry's API as the VM reaches it: events and (with `workflow`) resolving. */
    apiUrl: httpUrl.optional(),
    /** The command to run; by default the bundle manifest's (swarm.json) entrypoint. */
    runtime: z.object({ command: z.array(z.string().min(1)).min(1, 'must not be empty') }).optional(),
    secrets: z.record(secretName, z.string()).default({}),
    /** Signed bundles (docs/signing.md): the version's signature material, checked by an agent with a trust root. */
    signing: signingMaterial.optional(),
    /**
     * The workflow ("tenant/name") the orchestrator asked to run, written by its driver
     * over whatever the registry answered: what an agent with a trust root checks the
     * statement's tenant and workflow against.
     */
    expectedWorkflow: workflowRef.optional(),
  })
  .refine((m) => m.bundle || (m.workflow && m.apiUrl), {
    message: 'needs bundle.url and bundle.hash, or a workflow with apiUrl (and a token) to resolve it',
    path: ['bundle'],
  });
export type VmMetadata = z.infer<typeof vmMetadata>;

/** `swarm.json` at a bundle's root. */
export const bundleManifest = z.object({
  /** argv of the workflow, run in the unpacked bundle's directory. */
  entrypoint: z.array(z.string().min(1)).min(1),
});
export type BundleManifest = z.infer<typeof bundleManifest>;
