/**
 * The VM metadata document: everything a boot agent needs to fetch, verify and run a
 * workflow. The orchestrator renders it (as Firecracker MMDS content or a JSON file);
 * the boot agent reads it from flags, environment, MMDS or that file, and validates it
 * with this schema. Secrets travel only here, never inside a bundle.
 */
import { z } from 'zod';
import { bundleHash, uuid, workflowRef } from './names.js';

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

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
        /**
         * The registry's tree digest of the bundle (bundle-rules' treeDigest): lets a warm
         * boot check a cached unpacked tree by hashing its files, without the archive.
         */
        treeDigest: bundleHash.optional(),
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
