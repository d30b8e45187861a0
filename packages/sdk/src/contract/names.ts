import { z } from 'zod';
import { SHA256_HEX_PATTERN, TENANT_SLUG_PATTERN, TOKEN_SCOPE_KINDS, WORKFLOW_NAME_PATTERN } from './vocabulary.js';

const slugRe = new RegExp(TENANT_SLUG_PATTERN);

/** A bundle's content address: the sha256 of its bytes, as 64 lowercase hex digits. */
export const bundleHash = z.string().regex(new RegExp(SHA256_HEX_PATTERN), 'must be a sha256 digest: 64 lowercase hex characters');

/** Tenant slugs appear in URLs, token scopes and `tenant/name` references. */
export const tenantSlug = z.string().min(1).max(63).regex(slugRe, 'must be lowercase letters, digits and inner dashes (at most 63)');

/** Workflow names: like slugs, plus `.` and `_`, so existing job names fit. */
export const workflowName = z
  .string()
  .min(1)
  .max(100)
  .regex(new RegExp(WORKFLOW_NAME_PATTERN), 'must be lowercase letters, digits, ".", "_" and "-" (at most 100)');

export const uuid = z.uuid();

/** A workflow named either by its id or as `tenant/name`. */
export const workflowRef = z.union([
  uuid,
  z
    .string()
    .regex(/^[^/]+\/[^/]+$/, 'must be a workflow id or "tenant/name"')
    .transform((ref, ctx) => {
      const [tenant = '', name = ''] = ref.split('/');
      const t = tenantSlug.safeParse(tenant);
      const n = workflowName.safeParse(name);
      if (!t.success || !n.success) {
        ctx.addIssue({ code: 'custom', message: `"${ref}" is not a valid tenant/name reference` });
        return z.NEVER;
      }
      return `${t.data}/${n.data}`;
    }),
]);

/** Version numbers count 1, 2, 3… per workflow. */
export const versionNumber = z.number().int().min(1).max(2_147_483_647);

/** Why a version or release changed. Any text but NUL, which PostgreSQL cannot store (checked before an upload stores a byte). */
export const commitMessage = z
  .string()
  .max(1000)
  .refine((m) => !m.includes('\0'), 'must not contain a NUL character');

export const timestamp = z.string().describe('ISO-8601 timestamp');

/**
 * Token scopes: `admin` does everything; `orchestrator` resolves, spawns and reads
 * everything; `tenant:<slug>` sees only that tenant's workflows, versions and bundles.
 */
const [admin, orchestrator, tenant] = TOKEN_SCOPE_KINDS;
export const tokenScope = z.union([z.literal(admin), z.literal(orchestrator), z.templateLiteral([tenant, ':', z.string().regex(slugRe)])]);
export type TokenScope = z.infer<typeof tokenScope>;
