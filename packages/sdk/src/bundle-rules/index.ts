/**
 * `@swarm/sdk/bundle-rules`: what a bundle may hold, the one walk that checks an archive
 * against it, and the tree digest, shared by the registry (refusing at upload), the SDK
 * (at push) and the boot agent (at boot). Node builtins and node-tar only, no zod or
 * tRPC: the boot agent's start-up must stay lean.
 */
export {
  type ArchiveEntry,
  type BundleCounts,
  type BundleLimits,
  type CheckedEntry,
  DEFAULT_BUNDLE_LIMITS,
  EntryRules,
  type Listing,
  UnsafeBundle,
  ancestors,
  safeRelativePath,
  unpackedMode,
} from './entry-rules.js';
export { type TreeEntry, treeDigest } from './tree-digest.js';
export {
  type ArchiveSink,
  type ArchiveWalk,
  CHECK_ONLY,
  type CheckedFile,
  type FileSink,
  SMALL_FILE,
  type WalkResult,
  startArchiveWalk,
  walkArchive,
} from './walk.js';
