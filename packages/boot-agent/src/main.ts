/**
 * swarm-boot-agent: inside a freshly booted VM, turns "bundle URL + hash" into a running
 * workflow. It runs only bytes whose sha256 equals the expected hash, and writes only to
 * its cache and workflow directories.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { startupSnapshot } from 'node:v8';
import { type BundleCounts, DEFAULT_BUNDLE_LIMITS } from '@swarm/sdk/bundle-rules';
import { BundleCache } from './cache.js';
import { AgentError, EXIT } from './errors.js';
import { EventReporter, exchangeBootstrapToken } from './events.js';
import { ExecutionControl } from './heartbeat.js';
import { captureOutput } from './output.js';
import { DEFAULT_FETCH, type DownloadTap, downloadTo } from './fetch.js';
import { fromFile, fromMmds, fromVariables, resolveMetadata, validBundle, validSigning } from './metadata.js';
import { resolveActive } from './resolve.js';
import { sealMetadataService } from './seal.js';
import { openWorkflowDir, runWorkflow, runtimeCommand, runtimeUser } from './run.js';
import { count, helpText, parseInvocation, text } from './settings.js';
import { linkFromTree, linkFromTreeByDigest } from './tree.js';
import { trustedTreeDigest } from './trust.js';
import { type BeforeSwap, unpackBundle, unpackWhileDownloading } from './unpack.js';
import { loadTrustRoot, verifyBundle } from './verify.js';

/**
 * With SWARM_LOG_TIMINGS=1 every line ends with the ms since node's start: the guest's own
 * clock, for the VM breakdown (bench/README.md #7). Read at each call: a start-up snapshot
 * evaluates this module when it is built, not when it runs.
 */
const timings = () => process.env.SWARM_LOG_TIMINGS === '1';
const log = (msg: string) =>
  process.stderr.write(`swarm-boot-agent: ${msg}${timings() ? ` (+${Math.round(performance.now())} ms)` : ''}\n`);

async function main(argv: string[]): Promise<number> {
  const env = process.env as Record<string, string | undefined>;
  const { help, vars, fromFlags, runtime } = parseInvocation(argv, env);
  if (help) {
    process.stdout.write(helpText());
    return 0;
  }
  // Node's start and the agent's load, for the VM console's breakdown (bench/README.md #7); the image's /init asks for it.
  if (timings()) log(`started ${Math.round(performance.now())} ms after node did (node ${process.version})`);

  const workflowDir = text(vars, 'SWARM_WORKFLOW_DIR');
  const cache = new BundleCache(text(vars, 'SWARM_CACHE_DIR'), count(vars, 'SWARM_CACHE_MAX_BYTES'));
  const maxBundleBytes = count(vars, 'SWARM_MAX_BUNDLE_BYTES');
  const limits = {
    ...DEFAULT_BUNDLE_LIMITS,
    maxBytes: count(vars, 'SWARM_MAX_UNPACKED_BYTES'),
    maxEntries: count(vars, 'SWARM_MAX_ENTRIES'),
  };

  const mmdsUrl = text(vars, 'SWARM_MMDS_URL').replace(/\/+$/, '');
  const metadataFile = text(vars, 'SWARM_METADATA_FILE');
  const metadata = resolveMetadata([
    fromVariables(fromFlags, runtime),
    fromVariables(env, undefined),
    mmdsUrl === 'off' ? null : await fromMmds(mmdsUrl),
    await fromFile(metadataFile, vars.SWARM_METADATA_FILE !== undefined),
  ]);
  if (timings()) log('metadata read');
  // Nothing in the VM reads the metadata service again: sealed before the exchange, whatever
  // its outcome, so an unexchanged bootstrap token cannot be read there by the workload.
  const seal = sealMetadataService(mmdsUrl, metadata.apiUrl);
  if (seal)
    log(
      seal.sealed
        ? `metadata service ${seal.address} sealed (blackhole route)`
        : `metadata service ${seal.address} left reachable: ${seal.why}`,
    );
  // The metadata's agent token is a bootstrap credential the workload may be able to read:
  // traded for a session before anything else happens, and dropped from the agent's state
  // (metadata, variables, environment) whatever the outcome, so that nothing left here
  // refers to it. (A JS string cannot be wiped in place; once unreferenced it is garbage,
  // and the runtime's user cannot read this process's memory.)
  const execution = metadata.execution;
  metadata.execution = undefined;
  delete vars.SWARM_AGENT_TOKEN;
  delete fromFlags.SWARM_AGENT_TOKEN;
  delete env.SWARM_AGENT_TOKEN;
  const session =
    execution && metadata.apiUrl
      ? await exchangeBootstrapToken(
          { apiUrl: metadata.apiUrl, executionId: execution.id },
          execution.agentToken,
          count(vars, 'SWARM_EXCHANGE_SECONDS') * 1000,
        )
      : undefined;
  const target = execution && metadata.apiUrl && session ? { apiUrl: metadata.apiUrl, executionId: execution.id } : undefined;
  const events = new EventReporter(target && session && { ...target, sessionToken: session.sessionToken });
  // Heartbeats from the session on; a cancel in any answer stops the workflow (heartbeat.ts).
  const control = new ExecutionControl(target, session);
  events.onCancel = () => control.cancel();
  control.start();
  try {
    return await boot();
  } catch (err) {
    const e = err instanceof AgentError ? err : new AgentError('internal', (err as Error).message ?? String(err));
    // Kept well inside the registry's cap on one event's data: the final report must get through.
    events.emit('failed', { reason: e.reason, message: e.message.slice(0, 2000) });
    await events.flush();
    throw e;
  } finally {
    control.finish();
  }

  async function boot(): Promise<number> {
    events.emit('metadata_loaded', { source: metadata.bundle ? 'bundle' : 'workflow' });
    const trustRoot = loadTrustRoot(text(vars, 'SWARM_TRUST_ROOT'), vars.SWARM_TRUST_ROOT !== undefined);
    if (!trustRoot) log(`no trust root (${text(vars, 'SWARM_TRUST_ROOT')}): bundle signatures are not checked`);
    // From the agent's own settings only (a metadata service must not choose root), and
    // before anything is fetched.
    const user = runtimeUser(text(vars, 'SWARM_RUNTIME_USER'));
    // The cache may hold other workflows' bundles (a cache drive shared by VMs): kept the
    // agent's alone when the workflow runs as another user. Its cached tree reaches the
    // workflow as hard links in the workflow directory, which do not go through the cache's.
    if (user && user.uid !== 0) {
      const workflowDir = path.resolve(text(vars, 'SWARM_WORKFLOW_DIR'));
      const inCache = !path.relative(path.resolve(text(vars, 'SWARM_CACHE_DIR')), workflowDir).startsWith('..');
      if (inCache) log('the workflow directory is inside the cache directory: the cache stays readable by the workflow');
      else await cache.keepPrivate();
    }
    let bundle = metadata.bundle;
    if (!bundle) {
      // An API token: agent credentials only report on their execution.
      const token = vars.SWARM_TOKEN;
      if (!token) throw new AgentError('bad_metadata', 'resolving a workflow needs an API token (SWARM_TOKEN)');
      const resolved = await resolveActive(metadata.apiUrl!, metadata.workflow!, token);
      const from = `the registry's answer for ${metadata.workflow}`;
      bundle = validBundle(resolved, from);
      // The registry's signature material, checked like the metadata's (against the workflow asked for).
      metadata.signing ??= validSigning(resolved.signing, from);
    }

    // Before anything is fetched, linked or unpacked: the bytes are checked against this same hash.
    const signed = trustRoot ? verifyBundle(trustRoot, metadata, bundle) : null;
    if (signed) {
      events.emit('signature_verified', { keyId: metadata.signing!.keyId, tenant: signed.tenant, workflow: signed.workflow });
      log(`signature verified: key ${metadata.signing!.keyId.slice(0, 12)} for ${signed.tenant}/${signed.workflow}`);
    }
    const unpacked = await fromCache(bundle, trustedTreeDigest(bundle, signed));
    log(
      `unpacked ${unpacked.files} files (${unpacked.bytes} bytes) into ${workflowDir}${unpacked.from === 'tree' ? ' from the cached tree' : ''}`,
    );

    const command = await runtimeCommand(workflowDir, metadata.runtime?.command);
    await openWorkflowDir(workflowDir, user);
    // The runtime's output reaches the console and the registry masked (output.ts).
    const output = captureOutput(metadata.secrets, session?.outputMaxBytes, target && events);
    const graceMs = count(vars, 'SWARM_STOP_GRACE_SECONDS') * 1000;
    const end = await runWorkflow(
      command,
      workflowDir,
      metadata.secrets,
      user,
      (pid, stop) => {
        events.emit('runtime_started', { pid });
        control.started(stop);
      },
      { output, graceMs },
    );
    control.finish();
    output.flush();
    const truncated = output.truncated();
    if (truncated) events.emit('output_truncated', truncated);
    const { code, stoppedFor } = end;
    events.emit('runtime_exited', stoppedFor ? { code, stopped: stoppedFor } : { code });
    await events.flush();
    return code;
  }

  /**
   * Puts the bundle in the workflow directory: from the cache's unpacked tree when it
   * matches the bundle's trusted tree digest (hashing the tree's files, no gunzip) or, with
   * no trusted digest, the cached archive (tree.ts); else by unpacking the archive (cached,
   * or, on a miss, while it downloads) and keeping a tree of it for the next boot. A tree
   * that does not match is discarded.
   */
  async function fromCache(
    bundle: { url: string; hash: string; size?: number | undefined },
    digest: string | undefined,
  ): Promise<BundleCounts & { from: 'tree' | 'archive' }> {
    const started = Date.now();
    const tree = cache.treePath(bundle.hash);
    const archive = await fs.stat(cache.pathFor(bundle.hash)).catch(() => null);
    let treeDiscarded: string | undefined;
    if (archive?.isFile() && (await fs.lstat(tree).catch(() => null))) {
      try {
        const result = digest
          ? await linkFromTreeByDigest(bundle.hash, digest, tree, workflowDir, limits)
          : await linkFromTree(cache.pathFor(bundle.hash), bundle.hash, tree, workflowDir, limits);
        await cache.touch(bundle.hash);
        events.emit('cache_hit', { bytes: archive.size, from: 'tree' });
        log(
          `cache hit ${bundle.hash.slice(0, 12)} (${archive.size} bytes, unpacked tree${digest ? ', checked against its tree digest' : ''})`,
        );
        events.emit('unpacked', {
          files: result.files,
          directories: result.directories,
          bytes: result.bytes,
          ms: Date.now() - started,
          from: 'tree',
          checkedBy: digest ? 'tree_digest' : 'archive',
        });
        return { ...result, from: 'tree' };
      } catch (err) {
        // Whatever went wrong, the archive path decides: it reports a bad archive or an unsafe bundle properly.
        treeDiscarded = (err as Error).message ?? String(err);
        log(`discarded the cached tree of ${bundle.hash.slice(0, 12)}: ${treeDiscarded}`);
        await cache.discardTree(bundle.hash);
      }
    }
    const discarded = treeDiscarded === undefined ? {} : { treeDiscarded };
    // On a miss the unpack overlaps the download, so its `ms` covers both.
    const unpackStarted = Date.now();
    let treeSkipped: string | null = null;
    const keepTree: BeforeSwap = async (staging, r, listing) => {
      treeSkipped = await cache.saveTree(bundle.hash, staging, r, listing);
    };
    let result: BundleCounts;
    const cached = await cache.lookup(bundle.hash);
    if (cached && cached !== 'corrupt') {
      events.emit('cache_hit', { bytes: cached.bytes, from: 'archive', ...discarded });
      log(`cache hit ${bundle.hash.slice(0, 12)} (${cached.bytes} bytes)`);
      result = await unpackBundle(cached.file, workflowDir, limits, keepTree);
    } else {
      events.emit('cache_miss', cached === 'corrupt' ? { discarded: 'corrupt cached file', ...discarded } : discarded);
      if (cached === 'corrupt') log('discarded a corrupt cached bundle');
      result = await unpackWhileDownloading(workflowDir, limits, (tap) => fetchVerified(bundle, tap), keepTree);
    }
    if (treeSkipped) log(`no unpacked tree kept in the cache: ${treeSkipped}`);
    events.emit('unpacked', {
      files: result.files,
      directories: result.directories,
      bytes: result.bytes,
      ms: Date.now() - unpackStarted,
      from: 'archive',
    });
    return { ...result, from: 'archive' };
  }

  /** Downloads into the cache; the file gets its hash's name only once it verifies. */
  async function fetchVerified(bundle: { url: string; hash: string; size?: number | undefined }, tap: DownloadTap): Promise<string> {
    const attempts = count(vars, 'SWARM_FETCH_ATTEMPTS');
    // A hash mismatch is retried once with a fresh download: the bytes may have been damaged on the way.
    for (let round = 1; ; round++) {
      const temp = await cache.tempPath();
      try {
        const started = Date.now();
        const got = await downloadTo(temp, {
          ...DEFAULT_FETCH,
          url: bundle.url,
          expectedSize: bundle.size,
          maxBytes: maxBundleBytes,
          attempts,
          minBytesPerSecond: count(vars, 'SWARM_FETCH_MIN_BYTES_PER_SECOND'),
          stallWindowMs: count(vars, 'SWARM_FETCH_STALL_SECONDS') * 1000,
          onAttempt: (n, err) => log(`download attempt ${n} failed (${err.message}); retrying`),
          tap,
        });
        events.emit('fetched', { bytes: got.bytes, ms: Date.now() - started, attempts: got.attempts, resumed: got.resumed });
        if (got.hash !== bundle.hash) {
          throw new AgentError('hash_mismatch', `the download's sha256 is ${got.hash}, expected ${bundle.hash}`, round < 2);
        }
        events.emit('verified', { hash: bundle.hash });
        const file = await cache.commit(temp, bundle.hash);
        await cache.evict(bundle.hash);
        log(`fetched and verified ${bundle.hash.slice(0, 12)} (${got.bytes} bytes)`);
        return file;
      } catch (err) {
        await fs.rm(temp, { force: true });
        if (err instanceof AgentError && err.reason === 'hash_mismatch' && err.retryable) {
          log(`${err.message}; fetching again`);
          continue;
        }
        throw err;
      }
    }
  }
}

function start(argv: string[]): void {
  main(argv).then(
    (code) => process.exit(code),
    (err: unknown) => {
      const e = err instanceof AgentError ? err : new AgentError('internal', String((err as Error)?.stack ?? err));
      log(`${e.reason}: ${e.message}`);
      process.exit(e.exitCode ?? EXIT.INTERNAL);
    },
  );
}

/**
 * While the snapshot is built: validates a metadata document of the usual shape once, so
 * that the schema's parsers, which zod builds on first use, are in the snapshot already
 * (the first parse after a restore: ~0.45 ms on a host instead of ~1.9 ms, and TCG runs
 * it a hundred times slower; bench/README.md #7). Nothing else is kept from it.
 */
function warmMetadataSchema(): void {
  resolveMetadata([
    {
      bundle: { url: 'http://169.254.169.20:9000/bundle.tgz', hash: '0'.repeat(64), size: 1, treeDigest: '0'.repeat(64) },
      execution: { id: '00000000-0000-4000-8000-000000000000', agentToken: 'x' },
      apiUrl: 'http://169.254.169.21:3000',
      runtime: { command: ['node', 'index.js'] },
      secrets: { NAME: 'value' },
    },
  ]);
}

// Built into a start-up snapshot (scripts/vm/build-image.sh), the agent runs when the snapshot is restored, with the arguments given then.
if (startupSnapshot.isBuildingSnapshot()) {
  warmMetadataSchema();
  startupSnapshot.setDeserializeMainFunction(() => start(process.argv.slice(1)));
} else start(process.argv.slice(2));
