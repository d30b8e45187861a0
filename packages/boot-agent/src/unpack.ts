/**
 * Unpacks a bundle into a fresh staging directory, then swaps it in with a rename: the
 * target is either the complete new tree or untouched. The archive walker (walkArchive of @swarm/sdk/bundle-rules)
 * checks every entry; the writer here creates nothing but regular files and directories,
 * so no link, device or FIFO can ever appear, and no path can leave the staging directory.
 */
import fsSync, { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  type ArchiveSink,
  type BundleCounts,
  type BundleLimits,
  DEFAULT_BUNDLE_LIMITS,
  type Listing,
  UnsafeBundle,
  type WalkResult,
  startArchiveWalk,
  walkArchive,
} from '@swarm/sdk/bundle-rules';
import { isGzip } from './archive.js';
import { AgentError } from './errors.js';
import { removeAbandoned } from './leftovers.js';
import type { DownloadTap } from './fetch.js';

const unsafe = (message: string) => new AgentError('unsafe_bundle', message);

/**
 * Writes each checked entry under `root`: directories 0755, files with their unpacked mode.
 * Duplicates and file/directory clashes are found by name (EntryRules); writing also has
 * the file system's word for it (O_EXCL, ENOTDIR).
 */
function writeInto(root: string): ArchiveSink {
  const refusal = (entryPath: string, err: NodeJS.ErrnoException) =>
    err.code === 'EEXIST'
      ? unsafe(`entry "${entryPath}" appears twice`)
      : err.code === 'ENOTDIR' || err.code === 'EISDIR'
        ? unsafe(`entry "${entryPath}" conflicts with another entry`)
        : err;
  return {
    directory(rel, entry) {
      try {
        fsSync.mkdirSync(path.join(root, rel), { recursive: true, mode: 0o755 });
      } catch (err) {
        throw refusal(entry.path, err as NodeJS.ErrnoException);
      }
    },
    file({ path: entryPath, rel, mode }) {
      let fd: number;
      try {
        // 'wx' (O_EXCL): a second entry with the same path is refused, not merged.
        fd = fsSync.openSync(path.join(root, rel), 'wx', mode);
      } catch (err) {
        throw refusal(entryPath, err as NodeJS.ErrnoException);
      }
      return {
        fd,
        write(chunk) {
          for (let at = 0; at < chunk.length; ) at += fsSync.writeSync(fd, chunk, at);
        },
        end() {},
      };
    },
  };
}

/** What a failed walk means here: a refused or invalid bundle, unless the agent already said otherwise. */
function asAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  if (err instanceof UnsafeBundle) return unsafe(err.message);
  return unsafe(`not a valid bundle: ${(err as Error).message}`);
}

/** Runs after a bundle unpacked into `staging` and before it replaces the target (the cache keeps a tree of it). */
export type BeforeSwap = (staging: string, counts: BundleCounts, listing: Listing) => Promise<void>;

/**
 * Unpacks `file` (a gzip'd tar) to `target`, replacing what was there only on success.
 * One pass: entries are checked and written into a fresh staging directory beside the
 * target, which is renamed into place once the whole archive passed, and removed when an
 * entry is refused. A refused bundle may leave part of itself in the staging directory
 * until then, never more than the caps allow (entries, declared sizes, decompression
 * ratio), which bound an accepted bundle too: one gunzip instead of a checking pass and
 * a writing pass.
 */
export async function unpackBundle(
  file: string,
  target: string,
  limits: BundleLimits = DEFAULT_BUNDLE_LIMITS,
  beforeSwap?: BeforeSwap,
): Promise<BundleCounts> {
  if (!(await isGzip(file))) throw unsafe('the bundle is not gzip-compressed');
  return viaStaging(target, async (staging) => {
    const { counts, listing } = await walkFile(file, staging, limits);
    await beforeSwap?.(staging, counts, listing);
    return counts;
  });
}

/**
 * Unpacks a bundle while it downloads: `download` fetches the archive into a file, verifies
 * it against the bundle's hash and returns the file, feeding `tap` the bytes as they arrive;
 * the walk checks and writes them into the staging directory meanwhile, so the gunzip and
 * the files' writes overlap the transfer instead of following it. Nothing of it counts
 * before the download verified: the walk's verdict (a refusal too) is taken only then, and
 * the staging directory replaces the target only then, exactly as unpackBundle on the
 * verified file would (the same checks, the same refusals in the same order: the hash,
 * then gzip, then the entries). Should the tap not have seen the verified file's bytes
 * exactly once each, in order (a download that started over), the staging directory is
 * emptied and the verified file unpacked as unpackBundle does.
 */
export async function unpackWhileDownloading(
  target: string,
  limits: BundleLimits,
  download: (tap: DownloadTap) => Promise<string>,
  beforeSwap?: BeforeSwap,
): Promise<BundleCounts> {
  return viaStaging(target, async (staging) => {
    const walk = startArchiveWalk(limits, writeInto(staging));
    // Its refusal is reported once the download verified (below), or not at all.
    walk.result.catch(() => {});
    // Whether the walk was fed every byte of the download so far, once each, in order.
    let seen = 0;
    let intact = true;
    const tap: DownloadTap = {
      write(chunk, position) {
        if (position !== seen) {
          intact = false;
          walk.fail(new Error('the download started over'));
        }
        seen = position + chunk.length;
        if (!intact || walk.settled) return undefined;
        try {
          return walk.write(chunk);
        } catch (err) {
          walk.fail(err);
          return undefined;
        }
      },
    };
    let file: string;
    try {
      file = await download(tap);
    } catch (err) {
      walk.fail(err); // closes the file the walk may have open
      throw err;
    }
    if (!(await isGzip(file))) {
      const refusal = unsafe('the bundle is not gzip-compressed');
      walk.fail(refusal);
      throw refusal;
    }
    let walked: WalkResult;
    if (intact && seen === (await fs.stat(file)).size) {
      walk.end();
      walked = await walk.result.catch((err: unknown) => {
        throw asAgentError(err);
      });
    } else {
      walk.fail(new Error('superseded by a walk of the verified file')); // closes the file the walk may have open
      await fs.rm(staging, { recursive: true, force: true });
      await fs.mkdir(staging, { mode: 0o700 });
      walked = await walkFile(file, staging, limits);
    }
    await beforeSwap?.(staging, walked.counts, walked.listing);
    return walked.counts;
  });
}

/** Walks the archive `file` into `staging`; a failed walk is an AgentError. */
function walkFile(file: string, staging: string, limits: BundleLimits): Promise<WalkResult> {
  return walkArchive(createReadStream(file), limits, writeInto(staging)).catch((err: unknown) => {
    throw asAgentError(err);
  });
}

/**
 * Fills a fresh staging directory beside `target` with `fill`, then renames it into place:
 * the target is the complete new tree or untouched. The staging directory is removed when
 * `fill` fails. Staging directories (and the `.old` trees they replaced) that an agent
 * killed mid-unpack left beside `target` go once abandoned (leftovers.ts): in the VM they
 * sit on the cache drive, outside the cache's own accounting, and would add up.
 */
export async function viaStaging<T>(target: string, fill: (staging: string) => Promise<T>): Promise<T> {
  const parent = path.dirname(target);
  await fs.mkdir(parent, { recursive: true });
  const prefix = `.${path.basename(target)}.staging-`;
  await removeAbandoned(parent, prefix);
  const staging = await fs.mkdtemp(path.join(parent, prefix));
  try {
    const result = await fill(staging);
    await fs.chmod(staging, 0o755);
    const old = `${staging}.old`;
    const hadTarget = await fs.rename(target, old).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw err;
      },
    );
    await fs.rename(staging, target);
    if (hadTarget) await fs.rm(old, { recursive: true, force: true });
    return result;
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true });
    throw err;
  }
}
