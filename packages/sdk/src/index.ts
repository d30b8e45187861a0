export {
  createSwarmClient,
  isBundleHash,
  type SwarmClient,
  type SwarmClientOptions,
  type UploadOptions,
  type UploadOutcome,
  type UploadProgress,
} from './client.js';
export { SwarmError, toSwarmError, type LocalErrorCode, type SwarmErrorCode } from './errors.js';
export { Sha256Verifier, createSha256Verifier, sha256File, type VerifierOptions } from './hash.js';
export { DEFAULT_IGNORES, IGNORE_FILE } from './bundle-ignore.js';
export {
  type BundleEntry,
  type PackProgress,
  type PackResult,
  type ScanOptions,
  listBundleEntries,
  packBundle,
  packDirectory,
  scanBundle,
} from './pack.js';
export { SECRET_FILE_PATTERNS } from './secret-files.js';
export type * from './contract/api.js';
export type { TokenScope } from './contract/names.js';
export { bundleDigests, readSigningKey, signBundleFile, splitWorkflowRef } from './sign-bundle.js';
