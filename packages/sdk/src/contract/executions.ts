/** Executions (one run of a workflow version in a VM) and the events its boot agent reports. */
import { z } from 'zod';
import { timestamp, uuid, versionNumber, workflowRef } from './names.js';
import { secretName, vmMetadata } from './metadata.js';
import { executionStatus, versionReason } from './vocabulary.js';

export const eventType = z.enum([
  'metadata_loaded',
  'cache_hit',
  'cache_miss',
  'fetched',
  'verified',
  'signature_verified',
  'unpacked',
  'runtime_started',
  'runtime_exited',
  'failed',
  /** Lines the workflow printed (masked), a batch: `data.lines` = [{ stream, text, at, cut?, escaped? }]. */
  'output',
  /** Output dropped or cut past a limit, with the counts (once, at the end). */
  'output_truncated',
  /** The registry changed the execution without its agent (cancelled, lost, timed out, abandoned): why. */
  'registry_note',
]);

export const execution = z.object({
  id: uuid,
  workflowId: uuid,
  versionId: uuid,
  version: versionNumber,
  status: executionStatus,
  exitCode: z.number().int().nullable(),
  failureReason: z.string().nullable(),
  spawnedBy: z.string().nullable(),
  /** Why this version ran: the workflow's `active` version or its `canary`. */
  versionReason,
  routingKey: z.string().nullable(),
  /** The workflow is stopped this long after it started (the spawn's, else the workflow's); null: none. */
  timeoutSeconds: z.number().int().nullable(),
  /** When a cancel was asked (the execution ends `cancelled` once its agent reports, or after a grace period). */
  cancelRequestedAt: timestamp.nullable(),
  createdAt: timestamp,
  startedAt: timestamp.nullable(),
  finishedAt: timestamp.nullable(),
});
export type Execution = z.infer<typeof execution>;

export const executionEvent = z.object({
  executionId: uuid,
  seq: z.number().int().nonnegative(),
  type: eventType,
  data: z.record(z.string(), z.unknown()),
  createdAt: timestamp,
});
export type ExecutionEvent = z.infer<typeof executionEvent>;

const endpoint = z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, ''));

/**
 * Per-spawn limits on one run (#16): stored on the execution row, told to the agent in the
 * session answer. Kept as one object so every spawn path (single or batched) takes the same.
 */
export const executionControlInput = z.object({
  /** The workflow is stopped (status failed, reason timed_out) this long after it started; default: the workflow's timeout. */
  timeoutSeconds: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 3600)
    .optional(),
  /** Bytes of output the execution ships to the registry (default SWARM_OUTPUT_MAX_BYTES); past it lines are dropped and counted. */
  outputMaxBytes: z
    .number()
    .int()
    .min(0)
    .max(1024 * 1024 * 1024)
    .optional(),
});

/** A routing key: printable text (a NUL, a control character or a lone surrogate could never be stored as sent). */
const routingKey = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}\p{Cs}]+$/u, 'control characters and lone surrogates are not allowed');

const spawnSecrets = z.record(secretName, z.string().max(64 * 1024));
const spawnRuntime = z.object({ command: z.array(z.string().min(1)).min(1) });

/**
 * The options every spawn takes, single (executions.spawn) or many (executions.spawnMany):
 * add a per-spawn option HERE and both procedures accept it; services/spawn.ts
 * (`SpawnOptions`, `executionToSpawn`, `spawnResults`) carries it to the row and the metadata.
 */
export const spawnOptions = z.object({
  /** Passed through to the VM's metadata only: never stored, logged or put in events. */
  secrets: spawnSecrets.default({}),
  runtime: spawnRuntime.optional(),
  /** The registry's API as this VM reaches it (default: SWARM_PUBLIC_URL). */
  apiUrl: endpoint.optional(),
  /** The object store as this VM reaches it: the bundle URL is signed for this address. */
  storeEndpoint: endpoint.optional(),
  /**
   * How long the VM has to exchange the metadata's agent token for its session
   * (default: the registry's SWARM_BOOTSTRAP_TOKEN_TTL_SECONDS), e.g. longer for a slow boot.
   */
  bootstrapTokenTtlSeconds: z.number().int().min(1).max(3600).optional(),
  ...executionControlInput.shape,
});

export const spawnInput = spawnOptions.extend({
  workflow: workflowRef,
  /**
   * With a canary, the same routing key (a customer id, a request id…) always picks the
   * same version; without one the choice is random at the canary's weight.
   */
  routingKey: routingKey.optional(),
});

/** Most executions one executions.spawnMany creates (one statement). */
export const SPAWN_MANY_MAX = 1000;

/**
 * Fan-out: `count` executions alike, or one per item. The shared options apply to every
 * item; an item's `secrets` are merged over the shared ones, its `runtime` replaces them.
 */
export const spawnManyInput = spawnOptions
  .extend({
    workflow: workflowRef,
    count: z.number().int().min(1).max(SPAWN_MANY_MAX).optional(),
    items: z
      .array(
        z
          .object({ routingKey: routingKey.optional(), secrets: spawnSecrets.optional(), runtime: spawnRuntime.optional() })
          .strict()
          .refine(
            (item) => Object.keys(item).length > 0,
            'an item carries its routingKey, secrets or runtime (for executions alike, give count)',
          ),
      )
      .min(1)
      .max(SPAWN_MANY_MAX)
      .optional(),
  })
  .refine((i) => (i.count === undefined) !== (i.items === undefined), {
    message: 'give exactly one of count or items',
    path: ['count'],
  });

export const spawnResult = z.object({ execution, metadata: vmMetadata });
export type SpawnResult = z.infer<typeof spawnResult>;
/** executions.spawnMany: one result per execution, in the order asked for. */
export const spawnManyResult = z.object({ spawned: z.array(spawnResult) });
export type SpawnManyResult = z.infer<typeof spawnManyResult>;

export const appendEventInput = z.object({
  executionId: uuid,
  seq: z.number().int().min(0).max(100_000),
  type: eventType,
  data: z.record(z.string(), z.unknown()).default({}),
  at: z.string().optional(),
});

/** The boot agent's first call, with the metadata's (bootstrap) agent token. */
export const exchangeAgentTokenInput = z.object({ executionId: uuid });

/**
 * The session: an object, so later fields (e.g. how often to report) can join it. The
 * session token lives only in the agent's memory and dies when the execution ends.
 */
export const agentSession = z.object({
  sessionToken: z.string(),
  /** How often the agent reports it is alive while the workflow runs (heartbeat calls). */
  heartbeatSeconds: z.number().positive().optional(),
  /** The execution's timeout, counted from runtime_started; null: none. */
  timeoutSeconds: z.number().int().positive().nullable().optional(),
  /** Bytes of output the registry takes from this execution. */
  outputMaxBytes: z.number().int().nonnegative().optional(),
});

/** The agent's heartbeat (session token), and the registry's answer to it and to events. */
export const heartbeatInput = z.object({ executionId: uuid });
export const agentAnswer = z.object({
  accepted: z.boolean(),
  /** The execution was cancelled: the agent stops the workflow and reports. */
  cancelRequested: z.boolean().optional(),
});

export const cancelExecutionInput = z.object({ id: uuid });
export type AgentSession = z.infer<typeof agentSession>;

/** Events come in pages of at most this many, after the cursor `afterSeq`. */
export const EVENTS_PAGE_MAX = 1000;
export const listEventsInput = z.object({
  id: uuid,
  /** Events after this sequence number (the previous page's last `seq`); -1 or absent: from the start. */
  afterSeq: z.number().int().min(-1).optional(),
  limit: z.number().int().min(1).max(EVENTS_PAGE_MAX).default(EVENTS_PAGE_MAX),
});

export const listExecutionsInput = z.object({
  workflow: workflowRef,
  limit: z.number().int().min(1).max(200).default(50),
  /** Page after this execution (the previous page's last id). */
  cursor: uuid.optional(),
});
