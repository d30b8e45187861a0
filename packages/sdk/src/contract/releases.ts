/**
 * Release controls and retention: rollback, canary, promote, history, diff and gc.
 * Shapes only; the registry's services implement them.
 */
import { z } from 'zod';
import { bundleHash, commitMessage, timestamp, versionNumber, workflowRef } from './names.js';
import { releaseKind } from './vocabulary.js';

export const canaryWeight = z.number().int().min(1, 'canary weight must be 1–99 (percent)').max(99, 'canary weight must be 1–99 (percent)');

/** One row of a workflow's release history. For canary rows, `fromVersion` is the previous canary. */
export const releaseEvent = z.object({
  kind: releaseKind,
  fromVersion: versionNumber.nullable(),
  toVersion: versionNumber.nullable(),
  /** The canary's share of spawns in percent (canary rows only). */
  weight: canaryWeight.nullable(),
  actor: z.string(),
  message: z.string().nullable(),
  /** Under the `warn` signature policy: why the released version was not properly signed (docs/signing.md). */
  signatureWarning: z.string().nullable(),
  createdAt: timestamp,
});
export type ReleaseEvent = z.infer<typeof releaseEvent>;

/** What a workflow's spawns pick from: the active version and, optionally, a canary. */
export const releaseState = z.object({
  workflow: z.string().describe('tenant/name'),
  activeVersion: versionNumber.nullable(),
  canary: z.object({ version: versionNumber, weight: canaryWeight }).nullable(),
});
export type ReleaseState = z.infer<typeof releaseState>;

/** A file of a bundle, by content. */
export const bundleFile = z.object({ path: z.string(), size: z.number().int().nonnegative(), sha256: bundleHash });
export type BundleFile = z.infer<typeof bundleFile>;

export const versionDiff = z.object({
  fromVersion: versionNumber,
  toVersion: versionNumber,
  added: z.array(bundleFile),
  removed: z.array(bundleFile),
  changed: z.array(z.object({ path: z.string(), from: bundleFile, to: bundleFile })),
  unchanged: z.number().int().nonnegative(),
});
export type VersionDiff = z.infer<typeof versionDiff>;

export const gcReport = z.object({
  dryRun: z.boolean(),
  /** Versions retired (or that would be), per workflow. */
  prunedVersions: z.array(z.object({ workflow: z.string(), version: versionNumber, bundleHash })),
  /** Bundles no live version references, removed from the store. */
  deletedBundles: z.number().int().nonnegative(),
  /** Objects under the content-address prefix without a bundle row (left by interrupted uploads). */
  orphanObjects: z.number().int().nonnegative(),
  /** Temporary upload objects and unfinished multipart uploads of crashed uploads. */
  sweptUploads: z.number().int().nonnegative(),
  bytesFreed: z.number().int().nonnegative(),
  /** Bundles left alone because they are younger than the grace period. */
  keptForGrace: z.number().int().nonnegative(),
});
export type GcReport = z.infer<typeof gcReport>;

/** `30d`, `12h`, `90m`, `45s` or plain seconds: a duration as the CLI accepts it. */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,9})([smhdw]?)$/.exec(text.trim());
  if (!m) return null;
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[m[2] as '' | 's' | 'm' | 'h' | 'd' | 'w'];
  return Number(m[1]) * unit;
}

export const releaseInputs = {
  rollback: z.object({
    workflow: workflowRef,
    /** Default: the version that was active before the current one. */
    to: versionNumber.optional(),
    message: commitMessage.optional(),
  }),
  canarySet: z.object({ workflow: workflowRef, version: versionNumber, weight: canaryWeight, message: commitMessage.optional() }),
  canaryClear: z.object({ workflow: workflowRef, message: commitMessage.optional() }),
  promote: z.object({ workflow: workflowRef, message: commitMessage.optional() }),
  history: z.object({ workflow: workflowRef, limit: z.number().int().min(1).max(1000).default(100) }),
  state: z.object({ workflow: workflowRef }),
  diff: z.object({ workflow: workflowRef, from: versionNumber, to: versionNumber }),
  gc: z.object({
    dryRun: z.boolean().default(false),
    /** Keep the newest N versions of every workflow (besides the active and canary ones). */
    keep: z.number().int().min(1, 'keep at least 1 version per workflow').max(100_000).default(10),
    /** Only prune versions older than this many seconds. */
    olderThanSeconds: z
      .number()
      .int()
      .min(0)
      .max(100 * 365 * 86_400)
      .default(0),
  }),
} as const;
