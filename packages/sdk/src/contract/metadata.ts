/**
 * The VM metadata document: everything a boot agent needs to fetch, verify and run a
 * workflow. The orchestrator renders it (as Firecracker MMDS content or a JSON file);
 * the boot agent reads it from flags, environment, MMDS or that file, and validates it
 * with this schema. Secrets travel only here, never inside a bundle.
 *
 * Written with `zod/mini` and importing nothing of the rest of the contract but the
 * name patterns (patterns.ts): the boot agent validates every boot's metadata with it, and the
 * full zod (~800 KB in the agent's bundle) cost every boot its parse and compile time in
 * the VM. The shapes and messages are the same as the API's (names.ts); the schemas work
 * inside the API's classic-zod schemas (executions.ts) as any zod schema does.
 */
import * as z from 'zod/mini';
import { SHA256_HEX_PATTERN, TENANT_SLUG_PATTERN, WORKFLOW_NAME_PATTERN } from './patterns.js';

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });
const sha256 = z.string().check(z.regex(new RegExp(SHA256_HEX_PATTERN), 'must be a sha256 digest: 64 lowercase hex characters'));
const uuid = z.uuid();
const slugRe = new RegExp(TENANT_SLUG_PATTERN);
const nameRe = new RegExp(WORKFLOW_NAME_PATTERN);

/**
 * A workflow named by its id or as `tenant/name` (the rules of names.ts' workflowRef). A check,
 * not a transform: the value stays as it is, and the registry's answers that carry metadata
 * can be written by a serializer compiled from this schema (packages/server/src/trpc/answer.ts).
 */
const workflowRef = z.union([
  uuid,
  z.string().check(
    z.regex(/^[^/]+\/[^/]+$/, { error: 'must be a workflow id or "tenant/name"', abort: true }),
    z.refine(
      (ref: string) => {
        const [tenant = '', name = ''] = ref.split('/');
        return tenant.length <= 63 && slugRe.test(tenant) && name.length <= 100 && nameRe.test(name);
      },
      { error: (issue) => `"${String(issue.input)}" is not a valid tenant/name reference` },
    ),
  ),
]);

const base64 = z.string().check(z.regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64'), z.maxLength(16_384));
const hex64 = z.string().check(z.regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex'));
/** A version's signature material (@swarm/sdk/signing's SignatureMaterial). */
export const signingMaterial = z.object({
  statement: base64,
  signature: base64,
  keyId: hex64,
  delegation: z.object({ payload: base64, signature: base64, rootKeyId: hex64 }),
});

/** Environment variable names a secret may take. */
export const secretName = z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be a valid environment variable name'));

export const vmMetadata = z
  .object({
    bundle: z.optional(
      z.object({
        url: httpUrl,
        hash: sha256,
        /** When known, the download must be exactly this long. */
        size: z.optional(z.number().check(z.int(), z.nonnegative())),
        /**
         * The registry's tree digest of the bundle (bundle-rules' treeDigest): lets a warm
         * boot check a cached unpacked tree by hashing its files, without the archive.
         */
        treeDigest: z.optional(sha256),
      }),
    ),
    /** With no bundle: resolve the active version of this workflow through the API. */
    workflow: z.optional(workflowRef),
    execution: z.optional(z.object({ id: uuid, agentToken: z.string().check(z.minLength(1)) })),
    /** The registry's API as the VM reaches it: events and (with `workflow`) resolving. */
    apiUrl: z.optional(httpUrl),
    /** The command to run; by default the bundle manifest's (swarm.json) entrypoint. */
    runtime: z.optional(z.object({ command: z.array(z.string().check(z.minLength(1))).check(z.minLength(1, 'must not be empty')) })),
    secrets: z._default(z.record(secretName, z.string()), {}),
    /** Signed bundles (docs/signing.md): the version's signature material, checked by an agent with a trust root. */
    signing: z.optional(signingMaterial),
    /**
     * The workflow ("tenant/name") the orchestrator asked to run, written by its driver
     * over whatever the registry answered: what an agent with a trust root checks the
     * statement's tenant and workflow against.
     */
    expectedWorkflow: z.optional(workflowRef),
  })
  .check(
    z.refine((m) => !!(m.bundle || (m.workflow && m.apiUrl)), {
      message: 'needs bundle.url and bundle.hash, or a workflow with apiUrl (and a token) to resolve it',
      path: ['bundle'],
    }),
  );
export type VmMetadata = z.infer<typeof vmMetadata>;

/** `swarm.json` at a bundle's root. */
export const bundleManifest = z.object({
  /** argv of the workflow, run in the unpacked bundle's directory. */
  entrypoint: z.array(z.string().check(z.minLength(1))).check(z.minLength(1)),
});
export type BundleManifest = z.infer<typeof bundleManifest>;
