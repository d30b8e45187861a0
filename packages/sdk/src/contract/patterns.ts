/**
 * Name patterns, as PostgreSQL regular expressions (the database's CHECKs use them
 * verbatim; the contract compiles them with `new RegExp`, which reads them the same).
 * Plain data: the boot agent's metadata schema (metadata.ts) imports this file alone, so
 * none of the API's classic-zod schemas reach the agent's bundle.
 */
export const TENANT_SLUG_PATTERN = '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$';
export const WORKFLOW_NAME_PATTERN = '^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$';
export const SHA256_HEX_PATTERN = '^[0-9a-f]{64}$';
