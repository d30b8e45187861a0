/**
 * swarm-boot-agent: inside a freshly booted VM, turns "bundle URL + hash" into a running
 * workflow. It runs only bytes whose sha256 equals the expected hash, and writes only to
 * its cache and workflow directories.
 */
import fs from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type BundleCounts, DEFAULT_BUNDLE_LIMITS } from '@swarm/sdk/bundle-rules';
import { BundleCache } from './cache.js';
import { AgentError, EXIT } from './errors.js';
import { EventReporter } from './events.js';
import { DEFAULT_FETCH, downloadTo } from './fetch.js';
import { fromFile, fromMmds, fromVariables, resolveMetadata } from './metadata.js';
import { runWorkflow, runtimeCommand } from './run.js';
import { linkFromTree } from './tree.js';
import { unpackBundle } from './unpack.js';

const HELP = `Usage: swarm-boot-agent [options] [-- command...]

Fetches a workflow bundle, verifies its sha256, unpacks it and runs it.

Metadata (first found wins: flag, environment, MMDS, metadata file):
  --bundle-url URL          BUNDLE_URL          where to download the bundle (http/https)
  --bundle-hash HEX         BUNDLE_HASH         expected sha256 (64 lowercase hex)
  --bundle-size N           BUNDLE_SIZE         expected size in bytes (optional)
  --workflow REF            SWARM_WORKFLOW      with no bundle: resolve this workflow's active version
  --api-url URL             SWARM_API_URL       the registry's API (events, resolving)
  --execution-id ID         SWARM_EXECUTION_ID  execution to report events for
  --agent-token T           SWARM_AGENT_TOKEN   token for events and resolving
  -- command...             SWARM_RUNTIME_CMD   the command to run (JSON array in the environment);
                                                default: "entrypoint" of swarm.json in the bundle
  --metadata-file PATH      SWARM_METADATA_FILE JSON metadata document (default /run/swarm/metadata.json)
  --mmds-url URL            SWARM_MMDS_URL      Firecracker MMDS (default http://169.254.169.254; "off")

Agent settings:
  --cache-dir DIR           SWARM_CACHE_DIR         default /var/cache/swarm/bundles
  --workflow-dir DIR        SWARM_WORKFLOW_DIR      default /opt/workflow
  --cache-max-bytes N       SWARM_CACHE_MAX_BYTES   default 2147483648
  --max-bundle-bytes N      SWARM_MAX_BUNDLE_BYTES  default 536870912
  --max-unpacked-bytes N    SWARM_MAX_UNPACKED_BYTES default 4294967296
  --max-entries N           SWARM_MAX_ENTRIES       default 100000
  --fetch-attempts N        SWARM_FETCH_ATTEMPTS    default 4
  --min-rate N              SWARM_FETCH_MIN_BYTES_PER_SECOND  default 1024 (over 10 s)
  --stall-seconds N         SWARM_FETCH_STALL_SECONDS         default 10

Exit codes: the runtime's own code once it has started; before that
  64 bad usage or metadata   65 hash mismatch (after retries)
  66 unsafe or invalid bundle (refused entry, cap exceeded, not a gzip'd tar)
  69 store unreachable or fetch failed   70 internal error
`;

const FLAGS = {
  'bundle-url': 'BUNDLE_URL',
  'bundle-hash': 'BUNDLE_HASH',
  'bundle-size': 'BUNDLE_SIZE',
  workflow: 'SWARM_WORKFLOW',
  'api-url': 'SWARM_API_URL',
  'execution-id': 'SWARM_EXECUTION_ID',
  'agent-token': 'SWARM_AGENT_TOKEN',
  'metadata-file': 'SWARM_METADATA_FILE',
  'mmds-url': 'SWARM_MMDS_URL',
  'cache-dir': 'SWARM_CACHE_DIR',
  'workflow-dir': 'SWARM_WORKFLOW_DIR',
  'cache-max-bytes': 'SWARM_CACHE_MAX_BYTES',
  'max-bundle-bytes': 'SWARM_MAX_BUNDLE_BYTES',
  'max-unpacked-bytes': 'SWARM_MAX_UNPACKED_BYTES',
  'max-entries': 'SWARM_MAX_ENTRIES',
  'fetch-attempts': 'SWARM_FETCH_ATTEMPTS',
  'min-rate': 'SWARM_FETCH_MIN_BYTES_PER_SECOND',
  'stall-seconds': 'SWARM_FETCH_STALL_SECONDS',
} as const;

const log = (msg: string) => process.stderr.write(`swarm-boot-agent: ${msg}\n`);

function number(vars: Record<string, string | undefined>, name: string, fallback: number, min = 0): number {
  const raw = vars[name];
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new AgentError('bad_metadata', `${name}: must be a whole number ≥ ${min}, not "${raw}"`);
  return Number(raw);
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { help: { type: 'boolean', short: 'h' }, ...Object.fromEntries(Object.keys(FLAGS).map((f) => [f, { type: 'string' as const }])) },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new AgentError('bad_metadata', `${(err as Error).message} (see --help)`);
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  // One name space: a flag overrides the variable of the same meaning.
  const flagVars: Record<string, string | undefined> = {};
  const values = parsed.values as Record<string, string | boolean | undefined>;
  for (const [flag, name] of Object.entries(FLAGS)) flagVars[name] = values[flag] as string | undefined;
  const env = process.env as Record<string, string | undefined>;
  const vars: Record<string, string | undefined> = { ...env };
  for (const [k, v] of Object.entries(flagVars)) if (v !== undefined) vars[k] = v;
  const runtime = parsed.positionals.length ? parsed.positionals : undefined;

  const cacheDir = vars.SWARM_CACHE_DIR ?? '/var/cache/swarm/bundles';
  const workflowDir = vars.SWARM_WORKFLOW_DIR ?? '/opt/workflow';
  const cache = new BundleCache(cacheDir, number(vars, 'SWARM_CACHE_MAX_BYTES', 2 * 1024 ** 3));
  const maxBundleBytes = number(vars, 'SWARM_MAX_BUNDLE_BYTES', 512 * 1024 ** 2, 1);
  const limits = {
    ...DEFAULT_BUNDLE_LIMITS,
    maxBytes: number(vars, 'SWARM_MAX_UNPACKED_BYTES', DEFAULT_BUNDLE_LIMITS.maxBytes, 1),
    maxEntries: number(vars, 'SWARM_MAX_ENTRIES', DEFAULT_BUNDLE_LIMITS.maxEntries, 1),
  };

  const mmdsUrl = (vars.SWARM_MMDS_URL ?? 'http://169.254.169.254').replace(/\/+$/, '');
  const metadataFile = vars.SWARM_METADATA_FILE ?? '/run/swarm/metadata.json';
  const metadata = resolveMetadata([
    fromVariables(flagVars, runtime),
    fromVariables(env, undefined),
    mmdsUrl === 'off' ? null : await fromMmds(mmdsUrl),
    await fromFile(metadataFile, vars.SWARM_METADATA_FILE !== undefined),
  ]);
  const events = new EventReporter(
    metadata.execution && metadata.apiUrl ? { apiUrl: metadata.apiUrl, executionId: metadata.execution.id, agentToken: metadata.execution.agentToken } : undefined,
  );
  try {
    return await boot();
  } catch (err) {
    const e = err instanceof AgentError ? err : new AgentError('internal', (err as Error).message ?? String(err));
    events.emit('failed', { reason: e.reason, message: e.message });
    await events.flush();
    throw e;
  }

  async function boot(): Promise<number> {
    events.emit('metadata_loaded', { source: metadata.bundle ? 'bundle' : 'workflow' });
    let bundle = metadata.bundle;
    if (!bundle) {
      const token = metadata.execution?.agentToken ?? vars.SWARM_TOKEN;
      if (!token) throw new AgentError('bad_metadata', 'resolving a workflow needs a token (SWARM_AGENT_TOKEN or SWARM_TOKEN)');
      // Loaded only on this path: the SDK client (tRPC, undici) is most of the agent's code,
      // and evaluating it costs every boot ~20 MB of memory whether it is used or not.
      const { createSwarmClient } = await import('@swarm/sdk/client');
      const active = await createSwarmClient({ url: metadata.apiUrl!, token })
        .resolveActive(metadata.workflow!)
        .catch((err: Error) => {
          throw new AgentError('fetch_failed', `cannot resolve ${metadata.workflow}: ${err.message}`);
        });
      bundle = { url: active.bundleUrl, hash: active.bundleHash, size: active.size };
    }

    const unpacked = await fromCache(bundle);
    log(`unpacked ${unpacked.files} files (${unpacked.bytes} bytes) into ${workflowDir}${unpacked.from === 'tree' ? ' from the cached tree' : ''}`);

    const command = await runtimeCommand(workflowDir, metadata.runtime?.command);
    const code = await runWorkflow(command, workflowDir, metadata.secrets, (pid) => events.emit('runtime_started', { pid }));
    events.emit('runtime_exited', { code });
    await events.flush();
    return code;
  }

  /**
   * Puts the bundle in the workflow directory: from the cache's unpacked tree when it
   * matches the cached archive (tree.ts), else by unpacking the archive (cached, or fetched
   * on a miss) and keeping a tree of it for the next boot. A tree that does not match is
   * discarded.
   */
  async function fromCache(bundle: { url: string; hash: string; size?: number | undefined }): Promise<BundleCounts & { from: 'tree' | 'archive' }> {
    const started = Date.now();
    const tree = cache.treePath(bundle.hash);
    const archive = await fs.stat(cache.pathFor(bundle.hash)).catch(() => null);
    let treeDiscarded: string | undefined;
    if (archive?.isFile() && (await fs.lstat(tree).catch(() => null))) {
      try {
        const result = await linkFromTree(cache.pathFor(bundle.hash), bundle.hash, tree, workflowDir, limits);
        await cache.touch(bundle.hash);
        events.emit('cache_hit', { bytes: archive.size, from: 'tree' });
        log(`cache hit ${bundle.hash.slice(0, 12)} (${archive.size} bytes, unpacked tree)`);
        events.emit('unpacked', { files: result.files, directories: result.directories, bytes: result.bytes, ms: Date.now() - started, from: 'tree' });
        return { ...result, from: 'tree' };
      } catch (err) {
        // Whatever went wrong, the archive path decides: it reports a bad archive or an unsafe bundle properly.
        treeDiscarded = (err as Error).message ?? String(err);
        log(`discarded the cached tree of ${bundle.hash.slice(0, 12)}: ${treeDiscarded}`);
        await cache.discardTree(bundle.hash);
      }
    }
    const discarded = treeDiscarded === undefined ? {} : { treeDiscarded };
    let file: string;
    const cached = await cache.lookup(bundle.hash);
    if (cached && cached !== 'corrupt') {
      file = cached.file;
      events.emit('cache_hit', { bytes: cached.bytes, from: 'archive', ...discarded });
      log(`cache hit ${bundle.hash.slice(0, 12)} (${cached.bytes} bytes)`);
    } else {
      events.emit('cache_miss', cached === 'corrupt' ? { discarded: 'corrupt cached file', ...discarded } : discarded);
      if (cached === 'corrupt') log('discarded a corrupt cached bundle');
      file = await fetchVerified(bundle);
    }
    const unpackStarted = Date.now();
    let treeSkipped: string | null = null;
    const result = await unpackBundle(file, workflowDir, limits, async (staging, r, listing) => {
      treeSkipped = await cache.saveTree(bundle.hash, staging, r, listing);
    });
    if (treeSkipped) log(`no unpacked tree kept in the cache: ${treeSkipped}`);
    events.emit('unpacked', { files: result.files, directories: result.directories, bytes: result.bytes, ms: Date.now() - unpackStarted, from: 'archive' });
    return { ...result, from: 'archive' };
  }

  /** Downloads into the cache; the file gets its hash's name only once it verifies. */
  async function fetchVerified(bundle: { url: string; hash: string; size?: number | undefined }): Promise<string> {
    const attempts = number(vars, 'SWARM_FETCH_ATTEMPTS', DEFAULT_FETCH.attempts, 1);
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
          minBytesPerSecond: number(vars, 'SWARM_FETCH_MIN_BYTES_PER_SECOND', DEFAULT_FETCH.minBytesPerSecond),
          stallWindowMs: number(vars, 'SWARM_FETCH_STALL_SECONDS', DEFAULT_FETCH.stallWindowMs / 1000, 1) * 1000,
          onAttempt: (n, err) => log(`download attempt ${n} failed (${err.message}); retrying`),
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const e = err instanceof AgentError ? err : new AgentError('internal', String((err as Error)?.stack ?? err));
    log(`${e.reason}: ${e.message}`);
    process.exit(e.exitCode ?? EXIT.INTERNAL);
  },
);
