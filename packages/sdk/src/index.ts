export { createSwarmClient, isBundleHash, type SwarmClient, type SwarmClientOptions, type UploadOptions, type UploadOutcome, type UploadProgress } from './client.js';
export { SwarmError, toSwarmError } from './errors.js';
export { Sha256Verifier, createSha256Verifier, sha256File, type VerifierOptions } from './hash.js';
export { listBundleEntries, packDirectory } from './pack.js';
export type * from './contract/api.js';
export type { TokenScope } from './contract/names.js';
