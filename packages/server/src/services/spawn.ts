/**
 * What executions.spawn and executions.spawnMany share: the per-spawn options, the row each
 * spawn asks for, and the answer (execution + VM metadata document) each gets back. And
 * spawnMany itself: N executions of one workflow in one statement.
 */
import type { SpawnManyResult, SpawnResult } from '@swarm/sdk/contract';
import type { ExecutionToSpawn, SpawnedExecution } from '../db/queries/executions.js';
import { deleteRefusedExecutions, insertSpawnedExecutions } from '../db/queries/executions.js';
import type { WorkflowRelease } from '../db/queries/releases.js';
import { RegistryError } from '../errors.js';
import { findRelease, requireOrchestrator } from './access.js';
import { generateAgentToken, generateAgentTokens } from './auth.js';
import type { Deps, Principal } from './context.js';
import { toExecution } from './executions.js';
import { spawnBucket } from './releases.js';
import { type SpawnSignature, spawnSignature, spawnedSignature } from './signing.js';

/**
 * The options of one spawn (contract: `spawnOptions`). A new per-spawn option goes here,
 * then into `executionToSpawn` (if the row stores it) or `spawnResults` (if the VM's
 * metadata carries it): both procedures get it.
 */
export type SpawnOptions = {
  secrets: Record<string, string>;
  runtime?: { command: string[] } | undefined;
  apiUrl?: string | undefined;
  storeEndpoint?: string | undefined;
  bootstrapTokenTtlSeconds?: number | undefined;
  /** The workflow is stopped this long after it started (default: the workflow's timeout, else none). */
  timeoutSeconds?: number | undefined;
  /** Bytes of output the execution ships (default SWARM_OUTPUT_MAX_BYTES, within the per-execution event cap). */
  outputMaxBytes?: number | undefined;
};

export const noActiveVersion = (wf: { tenant: string; name: string }) =>
  new RegistryError(
    'NOT_FOUND',
    `workflow "${wf.tenant}/${wf.name}" has no active version`,
    `activate one: swarm activate ${wf.tenant}/${wf.name} <version>`,
  );

/** The execution row one spawn asks for. */
export function executionToSpawn(
  deps: Pick<Deps, 'config'>,
  p: Principal,
  workflowId: string,
  o: SpawnOptions & { routingKey?: string | undefined },
  agentTokenHash: string,
): ExecutionToSpawn {
  // The default fits the per-execution cap whatever it is; a spawn asking for more is refused.
  const { eventLimits, control } = deps.config;
  const outputMaxBytes = o.outputMaxBytes ?? Math.min(control.outputMaxBytes, Math.floor(eventLimits.maxBytes * 0.9));
  if (outputMaxBytes > eventLimits.maxBytes) {
    throw new RegistryError(
      'BAD_REQUEST',
      `outputMaxBytes ${outputMaxBytes} is more than the per-execution event cap (${eventLimits.maxBytes} bytes)`,
      'ask for less, or raise SWARM_MAX_EVENT_BYTES_PER_EXECUTION',
    );
  }
  return {
    timeoutSeconds: o.timeoutSeconds,
    outputMaxBytes,
    workflowId,
    bucket: spawnBucket(workflowId, o.routingKey),
    routingKey: o.routingKey,
    agentTokenHash,
    agentTokenTtlSeconds: o.bootstrapTokenTtlSeconds ?? deps.config.bootstrapTokenTtlSeconds,
    spawnedBy: p.name,
  };
}

/**
 * Before any row exists, from the cached release (no query per spawn): the version a spawn
 * in this bucket will get and its signature material, refusing what the tenant's signature
 * policy refuses (docs/signing.md).
 */
export type PlannedSignature = { versionId: string | undefined; material: SpawnSignature };

export function plannedSignature(release: WorkflowRelease, spawn: Pick<ExecutionToSpawn, 'bucket'>): PlannedSignature {
  const expected = release.canary && spawn.bucket < release.canary.weight ? release.canary : release.active;
  return { versionId: expected?.versionId, material: expected ? spawnSignature(release, expected) : undefined };
}

/**
 * Each inserted execution with its VM metadata document. The bundle URL is signed once per
 * distinct bundle and endpoint: every item of a spawnMany shares it, and the store hands
 * the same URL to later spawns while more than half its lifetime is left (BundleStore
 * `reuseUrls`), so a VM always gets a URL valid for at least half of SWARM_URL_TTL_SECONDS.
 */
export async function spawnResults(
  deps: Deps,
  spawns: { spawned: SpawnedExecution; agentToken: string; options: SpawnOptions; signature: PlannedSignature }[],
): Promise<SpawnResult[]> {
  const urls = new Map<string, string>();
  const urlKey = (hash: string, storeEndpoint: string | undefined) => `${hash} ${storeEndpoint ?? ''}`;
  for (const { spawned, options } of spawns) {
    const key = urlKey(spawned.bundleHash, options.storeEndpoint);
    if (!urls.has(key))
      urls.set(key, (await deps.store.signedUrl(spawned.bundleHash, deps.config.urlTtlSeconds, options.storeEndpoint)).url);
  }
  // A release changed since the cache's answer: the version spawned is not the one checked.
  // Such rows (rare) read their signature from the database, concurrently.
  const reread = new Map(
    await Promise.all(
      spawns
        .filter(({ spawned: { row }, signature }) => row.versionId !== signature.versionId)
        .map(async ({ spawned: { row } }) => [row.id, await spawnedSignature(deps, row.id, row.versionId)] as const),
    ),
  );
  const results: SpawnResult[] = [];
  for (const { spawned, agentToken, options, signature } of spawns) {
    const { row } = spawned;
    deps.log.info(
      { executionId: row.id, workflowId: row.workflowId, version: spawned.version, reason: row.versionReason },
      'execution spawned',
    );
    results.push({
      execution: toExecution(row, spawned.version),
      metadata: {
        bundle: {
          url: urls.get(urlKey(spawned.bundleHash, options.storeEndpoint))!,
          hash: spawned.bundleHash,
          size: spawned.size,
          ...(spawned.treeDigest ? { treeDigest: spawned.treeDigest } : {}),
        },
        execution: { id: row.id, agentToken },
        apiUrl: options.apiUrl ?? deps.publicUrl(),
        runtime: options.runtime,
        secrets: options.secrets,
        signing: reread.has(row.id) ? reread.get(row.id) : signature.material,
      },
    });
  }
  return results;
}

export type SpawnInput = SpawnOptions & { workflow: string; routingKey?: string | undefined };

export async function spawnExecution(deps: Deps, p: Principal, input: SpawnInput): Promise<SpawnResult> {
  requireOrchestrator(p);
  const release = await findRelease(deps, p, input.workflow);
  const wf = release.workflow;
  const agent = generateAgentToken('bootstrap');
  const row = executionToSpawn(deps, p, wf.id, input, agent.hash);
  const signature = plannedSignature(release, row);
  // Group-committed with the spawns around it (services/spawn-batcher.ts).
  const spawned = await deps.spawns.spawn(row);
  if (!spawned) throw noActiveVersion(wf);
  const [result] = await spawnResults(deps, [{ spawned, agentToken: agent.token, options: input, signature }]);
  return result!;
}

export type SpawnManyInput = SpawnOptions & {
  workflow: string;
  count?: number | undefined;
  items?:
    | { routingKey?: string | undefined; secrets?: Record<string, string> | undefined; runtime?: { command: string[] } | undefined }[]
    | undefined;
};

/**
 * Fan-out: `count` executions (or one per item) of the workflow's active version (or its
 * canary, by each item's bucket), inserted in ONE statement and committed together, each
 * with its own agent token and metadata. All or nothing: without an active version none is made.
 */
export async function spawnExecutions(deps: Deps, p: Principal, input: SpawnManyInput): Promise<SpawnManyResult> {
  requireOrchestrator(p);
  const release = await findRelease(deps, p, input.workflow);
  const wf = release.workflow;
  const { count, items: asked, workflow: _, ...shared } = input;
  const items = asked ?? Array.from({ length: count ?? 0 }, () => ({}) as NonNullable<SpawnManyInput['items']>[number]);
  const agents = generateAgentTokens('bootstrap', items.length);
  const planned = items.map((item, i) => {
    // Items of a `count` carry nothing of their own: they share the call's options object.
    const options: SpawnOptions & { routingKey?: string | undefined } =
      item.routingKey === undefined && !item.secrets && !item.runtime
        ? shared
        : {
            ...shared,
            routingKey: item.routingKey,
            secrets: item.secrets ? { ...shared.secrets, ...item.secrets } : shared.secrets,
            runtime: item.runtime ?? shared.runtime,
          };
    const agent = agents[i]!;
    const row = executionToSpawn(deps, p, wf.id, options, agent.hash);
    return { options, agent, row, signature: plannedSignature(release, row) };
  });
  const spawned = await insertSpawnedExecutions(
    deps.db,
    planned.map((s) => s.row),
  );
  if (spawned.some((s) => s === undefined)) throw noActiveVersion(wf);
  try {
    return {
      spawned: await spawnResults(
        deps,
        planned.map((s, i) => ({ spawned: spawned[i]!, agentToken: s.agent.token, options: s.options, signature: s.signature })),
      ),
    };
  } catch (err) {
    // All or nothing: a refusal after the insert (the release changed since the cache's
    // answer and the spawned version's signature is refused) takes back every row of the
    // call, not only the refused one — their tokens would reach no VM.
    await deleteRefusedExecutions(
      deps.db,
      spawned.map((s) => s!.row.id),
    );
    throw err;
  }
}
