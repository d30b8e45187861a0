/**
 * What executions.spawn and executions.spawnMany share: the per-spawn options, the row each
 * spawn asks for, and the answer (execution + VM metadata document) each gets back. And
 * spawnMany itself: N executions of one workflow in one statement.
 */
import type { SpawnManyResult, SpawnResult } from '@swarm/sdk/contract';
import type { ExecutionToSpawn, SpawnedExecution } from '../db/queries/executions.js';
import { insertSpawnedExecutions } from '../db/queries/executions.js';
import { RegistryError } from '../errors.js';
import { findRelease, requireOrchestrator } from './access.js';
import { generateAgentToken } from './auth.js';
import type { Deps, Principal } from './context.js';
import { toExecution } from './executions.js';
import { spawnBucket } from './releases.js';

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
  return {
    workflowId,
    bucket: spawnBucket(workflowId, o.routingKey),
    routingKey: o.routingKey,
    agentTokenHash,
    agentTokenTtlSeconds: o.bootstrapTokenTtlSeconds ?? deps.config.bootstrapTokenTtlSeconds,
    spawnedBy: p.name,
  };
}

/** Each inserted execution with its VM metadata document; one signed URL per distinct bundle and endpoint. */
export async function spawnResults(
  deps: Deps,
  spawns: { spawned: SpawnedExecution; agentToken: string; options: SpawnOptions }[],
): Promise<SpawnResult[]> {
  const urls = new Map<string, Promise<string>>();
  const urlOf = (hash: string, storeEndpoint: string | undefined) => {
    const key = `${hash} ${storeEndpoint ?? ''}`;
    let url = urls.get(key);
    if (!url) {
      url = deps.store.signedUrl(hash, deps.config.urlTtlSeconds, storeEndpoint).then((s) => s.url);
      urls.set(key, url);
    }
    return url;
  };
  return Promise.all(
    spawns.map(async ({ spawned, agentToken, options }) => {
      const { row } = spawned;
      deps.log.info(
        { executionId: row.id, workflowId: row.workflowId, version: spawned.version, reason: row.versionReason },
        'execution spawned',
      );
      return {
        execution: toExecution(row, spawned.version),
        metadata: {
          bundle: { url: await urlOf(spawned.bundleHash, options.storeEndpoint), hash: spawned.bundleHash, size: spawned.size },
          execution: { id: row.id, agentToken },
          apiUrl: options.apiUrl ?? deps.publicUrl(),
          runtime: options.runtime,
          secrets: options.secrets,
        },
      };
    }),
  );
}

export type SpawnInput = SpawnOptions & { workflow: string; routingKey?: string | undefined };

export async function spawnExecution(deps: Deps, p: Principal, input: SpawnInput): Promise<SpawnResult> {
  requireOrchestrator(p);
  const { workflow: wf } = await findRelease(deps, p, input.workflow);
  const agent = generateAgentToken('bootstrap');
  // Group-committed with the spawns around it (services/spawn-batcher.ts).
  const spawned = await deps.spawns.spawn(executionToSpawn(deps, p, wf.id, input, agent.hash));
  if (!spawned) throw noActiveVersion(wf);
  const [result] = await spawnResults(deps, [{ spawned, agentToken: agent.token, options: input }]);
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
  const { workflow: wf } = await findRelease(deps, p, input.workflow);
  const { count, items: asked, workflow: _, ...shared } = input;
  const items = asked ?? Array.from({ length: count ?? 0 }, () => ({}) as NonNullable<SpawnManyInput['items']>[number]);
  const planned = items.map((item) => {
    const options: SpawnOptions & { routingKey?: string | undefined } = {
      ...shared,
      routingKey: item.routingKey,
      secrets: item.secrets ? { ...shared.secrets, ...item.secrets } : shared.secrets,
      runtime: item.runtime ?? shared.runtime,
    };
    return { options, agent: generateAgentToken('bootstrap') };
  });
  const spawned = await insertSpawnedExecutions(
    deps.db,
    planned.map((s) => executionToSpawn(deps, p, wf.id, s.options, s.agent.hash)),
  );
  if (spawned.some((s) => s === undefined)) throw noActiveVersion(wf);
  return {
    spawned: await spawnResults(
      deps,
      planned.map((s, i) => ({ spawned: spawned[i]!, agentToken: s.agent.token, options: s.options })),
    ),
  };
}
