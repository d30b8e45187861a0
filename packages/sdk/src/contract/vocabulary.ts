/**
 * The registry's enum-like vocabulary, each list written once: the API's zod enums and
 * types derive from these, and the server's database CHECK constraints are rendered from
 * them (packages/server/src/db/schema.ts), so an added value needs one edit here (and a
 * migration). Plain data and zod only: the schema module imports this file.
 */
import { z } from 'zod';

/** Kinds of release-history rows: changes of the active version, and of the canary. */
export const RELEASE_KINDS = ['activate', 'rollback', 'promote', 'canary', 'canary_clear'] as const;
export const releaseKind = z.enum(RELEASE_KINDS);
export type ReleaseKind = z.infer<typeof releaseKind>;

/** An execution moves pending → booting → running → succeeded | failed | cancelled. */
export const EXECUTION_STATUSES = ['pending', 'booting', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export const executionStatus = z.enum(EXECUTION_STATUSES);
export type ExecutionStatus = z.infer<typeof executionStatus>;
/** Where an execution ends: nothing moves it further, and its agent credentials are revoked. */
export const TERMINAL_EXECUTION_STATUSES = ['succeeded', 'failed', 'cancelled'] as const satisfies readonly ExecutionStatus[];
export const isTerminalStatus = (s: ExecutionStatus): boolean => (TERMINAL_EXECUTION_STATUSES as readonly string[]).includes(s);

/** Why a spawn got its version: the workflow's `active` version or its `canary`. */
export const VERSION_REASONS = ['active', 'canary'] as const;
export const versionReason = z.enum(VERSION_REASONS);
export type VersionReason = z.infer<typeof versionReason>;

/**
 * A tenant's signature policy, applied by the registry when a version is released
 * (activate, canary, promote, rollback): `off` ignores signatures, `warn` allows an
 * unsigned version but records it, `enforce` refuses it (docs/signing.md).
 */
export const SIGNATURE_POLICIES = ['off', 'warn', 'enforce'] as const;
export const signaturePolicy = z.enum(SIGNATURE_POLICIES);
export type SignaturePolicy = z.infer<typeof signaturePolicy>;

/** What an API token may do; a `tenant` token also names its tenant (`tenant:<slug>` in the API). */
export const TOKEN_SCOPE_KINDS = ['admin', 'orchestrator', 'tenant'] as const;
export const tokenScopeKind = z.enum(TOKEN_SCOPE_KINDS);
export type TokenScopeKind = z.infer<typeof tokenScopeKind>;

/**
 * The registry's error codes (RegistryError on the server, SwarmError.code in the SDK).
 * Each is also a tRPC error code, so one name travels over both transports.
 */
export const REGISTRY_ERROR_CODES = [
  'BAD_REQUEST',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONFLICT',
  'PRECONDITION_FAILED',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNPROCESSABLE_CONTENT',
  'TIMEOUT',
  'TOO_MANY_REQUESTS',
  'INTERNAL_SERVER_ERROR',
  'SERVICE_UNAVAILABLE',
] as const;
export const registryErrorCode = z.enum(REGISTRY_ERROR_CODES);
export type RegistryErrorCode = z.infer<typeof registryErrorCode>;

/** Name patterns: in patterns.ts (no zod there: the boot agent's metadata schema needs only them). */
export { SHA256_HEX_PATTERN, TENANT_SLUG_PATTERN, WORKFLOW_NAME_PATTERN } from './patterns.js';
