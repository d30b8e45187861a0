/**
 * The registry's schema. Constraints do the guarding: whatever a bug in the service
 * layer tries, the database refuses duplicate names, versions out of sequence,
 * malformed hashes and dangling references. drizzle-kit generates drizzle/ from this.
 */
import { type SQL, sql } from 'drizzle-orm';
import {
  EXECUTION_STATUSES,
  RELEASE_KINDS,
  SHA256_HEX_PATTERN,
  SIGNATURE_POLICIES,
  TENANT_SLUG_PATTERN,
  TERMINAL_EXECUTION_STATUSES,
  TOKEN_SCOPE_KINDS,
  VERSION_REASONS,
  WORKFLOW_NAME_PATTERN,
} from '@swarm/sdk/contract';
import {
  type AnyPgColumn,
  bigint,
  check,
  foreignKey,
  index,
  integer,
  jsonb,
  pgTable,
  pgView,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  unique,
  uuid,
} from 'drizzle-orm/pg-core';

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow();

/** A string literal for SQL text; the values below are the contract's constants, never input. */
const literal = (value: string) => sql.raw(`'${value.replaceAll("'", "''")}'`);
/** `col ~ 'pattern'`, with one of the contract's name patterns. */
const matches = (col: AnyPgColumn, pattern: string): SQL => sql`${col} ~ ${literal(pattern)}`;
/** `col in ('a', 'b')`, with one of the contract's lists: the CHECK allows exactly the API's values. */
const oneOf = (col: AnyPgColumn, values: readonly string[]): SQL => sql`${col} in (${sql.join(values.map(literal), sql`, `)})`;

export const tenants = pgTable(
  'tenants',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    slug: text('slug').notNull().unique(),
    /** Whether releasing an unsigned version is allowed (off), recorded (warn) or refused (enforce): docs/signing.md. */
    signaturePolicy: text('signature_policy', { enum: SIGNATURE_POLICIES }).notNull().default('off'),
    createdAt: createdAt(),
  },
  (t) => [
    check('tenants_slug_format', sql`${matches(t.slug, TENANT_SLUG_PATTERN)} and length(${t.slug}) <= 63`),
    check('tenants_signature_policy_known', oneOf(t.signaturePolicy, SIGNATURE_POLICIES)),
  ],
);

/**
 * A tenant's signing keys: public halves only (the private key never reaches the
 * registry), each with the root's delegation of it to the tenant, which travels to the VM
 * with every version the key signed. A revoked key stays (versions name it); the registry
 * no longer accepts it at release or spawn.
 */
export const tenantSigningKeys = pgTable(
  'tenant_signing_keys',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    /** hex sha256 of the SPKI DER. */
    keyId: text('key_id').notNull(),
    /** base64 SPKI DER (Ed25519). */
    publicKey: text('public_key').notNull(),
    /** The root's delegation ({payload, signature, rootKeyId}), verbatim. */
    delegation: jsonb('delegation').$type<{ payload: string; signature: string; rootKeyId: string }>().notNull(),
    notAfter: timestamp('not_after', { withTimezone: true, mode: 'date' }).notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
    revokedBy: text('revoked_by'),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.keyId] }),
    check('tenant_signing_keys_key_id_format', matches(t.keyId, SHA256_HEX_PATTERN)),
    check('tenant_signing_keys_revoked_complete', sql`(${t.revokedAt} is null) = (${t.revokedBy} is null)`),
  ],
);

export const workflows = pgTable(
  'workflows',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id),
    name: text('name').notNull(),
    /**
     * The one active version. Null until the first activation. The composite key
     * below makes it impossible to activate another workflow's version.
     */
    activeVersionId: uuid('active_version_id'),
    /**
     * A canary: spawns pick this version for `canary_weight` percent of executions, the
     * active version for the rest. Both set or both null; pinned to this workflow like
     * the active version.
     */
    canaryVersionId: uuid('canary_version_id'),
    canaryWeight: integer('canary_weight'),
    /** Default timeout of its executions (a spawn may give its own); null: none. */
    timeoutSeconds: integer('timeout_seconds'),
    createdAt: createdAt(),
  },
  (t) => [
    unique('workflows_tenant_name_unique').on(t.tenantId, t.name),
    check('workflows_name_format', sql`${matches(t.name, WORKFLOW_NAME_PATTERN)} and length(${t.name}) <= 100`),
    foreignKey({
      name: 'workflows_active_version_fk',
      columns: [t.id, t.activeVersionId],
      foreignColumns: activeVersionTarget(),
    }),
    foreignKey({
      name: 'workflows_canary_version_fk',
      columns: [t.id, t.canaryVersionId],
      foreignColumns: activeVersionTarget(),
    }),
    check('workflows_canary_complete', sql`(${t.canaryVersionId} is null) = (${t.canaryWeight} is null)`),
    check('workflows_canary_weight_range', sql`${t.canaryWeight} between 1 and 99`),
    // A canary of the active version would be a no-op that hides a mistake.
    check('workflows_canary_not_active', sql`${t.canaryVersionId} is null or ${t.canaryVersionId} is distinct from ${t.activeVersionId}`),
  ],
);

/** Declared as a function with its type spelled out, which breaks the workflows ⇄ versions type cycle. */
function activeVersionTarget(): [AnyPgColumn, AnyPgColumn] {
  return [workflowVersions.workflowId, workflowVersions.id];
}

/**
 * Bundles known to the registry, keyed by content address. A row exists only after
 * the object was stored and verified, so every live version's bundle is known to exist;
 * the size lives here so resolving a version needs no round trip to the store, and
 * garbage collection can find bundles no live version references. When gc removes the
 * object, the row stays (pruned versions still name the hash) with `deleted_at` set;
 * uploading the same bytes again clears it.
 */
export const bundles = pgTable(
  'bundles',
  {
    hash: text('hash').primaryKey(),
    size: bigint('size', { mode: 'number' }).notNull(),
    /**
     * The digest of what the bundle unpacks to (@swarm/sdk/bundle-rules' treeDigest),
     * computed from the same bytes in the same pass as `hash` at upload. Null for bundles
     * stored before it existed, until their bytes are uploaded again; a VM then boots
     * them from the verified archive.
     */
    treeDigest: text('tree_digest'),
    createdAt: createdAt(),
    deletedAt: timestamp('deleted_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    check('bundles_hash_format', matches(t.hash, SHA256_HEX_PATTERN)),
    check('bundles_size_nonnegative', sql`${t.size} >= 0`),
    check('bundles_tree_digest_format', matches(t.treeDigest, SHA256_HEX_PATTERN)),
  ],
);

/**
 * Immutable versions: numbered 1, 2, 3… per workflow. Number, bundle and message never
 * change; only `pruned_at` is set once, by gc, when the version is retired (the row stays
 * so history, executions and numbering keep making sense).
 */
export const workflowVersions = pgTable(
  'workflow_versions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    workflowId: uuid('workflow_id')
      .notNull()
      .references(() => workflows.id),
    version: integer('version').notNull(),
    bundleHash: text('bundle_hash')
      .notNull()
      .references(() => bundles.hash),
    message: text('message'),
    /** Name of the API token that registered the version (audit). */
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    prunedAt: timestamp('pruned_at', { withTimezone: true, mode: 'date' }),
    /**
     * The tenant key's signature: the statement's canonical bytes (base64, verbatim), the
     * Ed25519 signature over them and the key's id. Set at push or later by `swarm sign`
     * (the one change a version takes besides pruning); all three or none.
     */
    signatureStatement: text('signature_statement'),
    signature: text('signature'),
    signingKeyId: text('signing_key_id'),
  },
  (t) => [
    check(
      'workflow_versions_signature_complete',
      sql`(${t.signature} is null) = (${t.signatureStatement} is null) and (${t.signature} is null) = (${t.signingKeyId} is null)`,
    ),
    unique('workflow_versions_workflow_version_unique').on(t.workflowId, t.version),
    // Target of workflows_active_version_fk: pins an active version to its workflow.
    unique('workflow_versions_workflow_id_unique').on(t.workflowId, t.id),
    check('workflow_versions_version_positive', sql`${t.version} >= 1`),
    check('workflow_versions_hash_format', matches(t.bundleHash, SHA256_HEX_PATTERN)),
    index('workflow_versions_bundle_hash_idx').on(t.bundleHash),
  ],
);

/**
 * The release history, append-only: every change of a workflow's active version
 * (`activate`, `rollback`, `promote`) and of its canary (`canary`, `canary_clear`), with
 * who, when, from which version to which, and why. For canary rows "from" is the
 * previous canary; a cleared canary has no "to". Rollback reads this table.
 */
export const workflowActivations = pgTable(
  'workflow_activations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    workflowId: uuid('workflow_id')
      .notNull()
      .references(() => workflows.id),
    fromVersionId: uuid('from_version_id').references(() => workflowVersions.id),
    toVersionId: uuid('to_version_id').references(() => workflowVersions.id),
    kind: text('kind', { enum: RELEASE_KINDS }).notNull().default('activate'),
    /** The canary's share of spawns in percent, on `canary` rows. */
    weight: integer('weight'),
    actor: text('actor').notNull(),
    message: text('message'),
    /** Under the `warn` policy: why the version released was not properly signed (`unsigned`, `revoked key …`). */
    signatureWarning: text('signature_warning'),
    createdAt: createdAt(),
  },
  (t) => [
    index('workflow_activations_workflow_idx').on(t.workflowId, t.createdAt),
    check('workflow_activations_kind_known', oneOf(t.kind, RELEASE_KINDS)),
    check('workflow_activations_to_present', sql`(${t.kind} = 'canary_clear') = (${t.toVersionId} is null)`),
    check('workflow_activations_weight', sql`(${t.kind} = 'canary') = (${t.weight} is not null)`),
  ],
);

/**
 * API tokens minted by admins. Only the sha256 of the token is stored: tokens are
 * 256-bit random values, so a fast hash is enough and a database dump reveals none.
 * A tenant-scoped token names its tenant; other scopes must not.
 */
export const apiTokens = pgTable(
  'api_tokens',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull(),
    scope: text('scope', { enum: TOKEN_SCOPE_KINDS }).notNull(),
    tenantId: uuid('tenant_id').references(() => tenants.id),
    tokenHash: text('token_hash').notNull().unique(),
    createdBy: text('created_by').notNull(),
    createdAt: createdAt(),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    check('api_tokens_scope_known', oneOf(t.scope, TOKEN_SCOPE_KINDS)),
    check('api_tokens_tenant_scope', sql`(${t.scope} = 'tenant') = (${t.tenantId} is not null)`),
    check('api_tokens_hash_format', matches(t.tokenHash, SHA256_HEX_PATTERN)),
  ],
);

/** One run of a workflow version in a VM. Filled by the spawn path. */
export const executions = pgTable(
  'executions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    // Both checked by executions_version_of_workflow_fk alone (below): the version exists and
    // is one of this workflow's, whose row exists by the versions' own key. A key of each
    // column on top cost every spawned row two more checks (bench/README.md, #6c).
    workflowId: uuid('workflow_id').notNull(),
    versionId: uuid('version_id').notNull(),
    status: text('status', { enum: EXECUTION_STATUSES }).notNull().default('pending'),
    exitCode: integer('exit_code'),
    failureReason: text('failure_reason'),
    /**
     * The execution's agent credentials, hashed like API tokens and stored (not signed) so
     * that every replica can check them without sharing a key. The agent token of the VM
     * metadata is a bootstrap credential: it does one thing, once, before
     * `agent_token_expires_at` — trade itself for the session credential, which lives only
     * in the boot agent's memory and appends this execution's events. The exchange clears
     * the bootstrap hash (so the metadata's token is dead before the workload starts);
     * the execution's end clears both (executions_ended_revoked).
     */
    agentTokenHash: text('agent_token_hash').unique(),
    agentTokenExpiresAt: timestamp('agent_token_expires_at', { withTimezone: true, mode: 'date' }),
    agentSessionHash: text('agent_session_hash'),
    /**
     * How many events, and how many bytes of event data (as JSON text), the execution
     * has: kept here, under the row lock every append takes, so the per-execution caps
     * cost no count over the events table.
     */
    eventCount: integer('event_count').notNull().default(0),
    eventBytes: bigint('event_bytes', { mode: 'number' }).notNull().default(0),
    /**
     * Output (`output` and `output_truncated` events) has a budget of its own, inside the
     * caps above: the bytes it may take (from the spawn or SWARM_OUTPUT_MAX_BYTES), and
     * what it took. Lifecycle events are never refused because output used its budget.
     */
    outputMaxBytes: bigint('output_max_bytes', { mode: 'number' }).notNull().default(4194304),
    outputEventCount: integer('output_event_count').notNull().default(0),
    outputBytes: bigint('output_bytes', { mode: 'number' }).notNull().default(0),
    /** The workflow is stopped this long after runtime_started (the agent enforces it, the reaper backs it up). */
    timeoutSeconds: integer('timeout_seconds'),
    /** Cancel was asked (not terminal): the agent learns it from its heartbeat or event answers and stops the workflow. */
    cancelRequestedAt: timestamp('cancel_requested_at', { withTimezone: true, mode: 'date' }),
    /** The agent's last heartbeat (or event): heartbeats that stop make a running execution `lost`. */
    lastHeartbeatAt: timestamp('last_heartbeat_at', { withTimezone: true, mode: 'date' }),
    /** Who spawned it (token name). */
    spawnedBy: text('spawned_by'),
    /** Why this version was picked: the workflow's `active` version or its `canary`. */
    versionReason: text('version_reason', { enum: VERSION_REASONS }).notNull().default('active'),
    /** The caller's routing key, when it gave one: the same key always picks the same version. */
    routingKey: text('routing_key'),
    createdAt: createdAt(),
    startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }),
    finishedAt: timestamp('finished_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    check('executions_status_known', oneOf(t.status, EXECUTION_STATUSES)),
    check('executions_version_reason_known', oneOf(t.versionReason, VERSION_REASONS)),
    // An ended execution takes nobody's report any more: whatever the workload may have
    // learnt, no credential of it is live once the agent's final report is recorded.
    check(
      'executions_ended_revoked',
      sql`not ${oneOf(t.status, TERMINAL_EXECUTION_STATUSES)} or (${t.agentTokenHash} is null and ${t.agentSessionHash} is null)`,
    ),
    // Both must point at the same workflow: a version of another workflow is refused.
    foreignKey({
      name: 'executions_version_of_workflow_fk',
      columns: [t.workflowId, t.versionId],
      foreignColumns: [workflowVersions.workflowId, workflowVersions.id],
    }),
    index('executions_workflow_created_idx').on(t.workflowId, t.createdAt),
    // Partial: a spawned row has no session yet, and a finished one none any more, so most rows
    // would only add a NULL entry (an index write per spawn) to a unique index.
    uniqueIndex('executions_agent_session_hash_key').on(t.agentSessionHash).where(sql`${t.agentSessionHash} is not null`),
  ],
);

/** What the boot agent reported, ordered per execution by sequence number. */
export const executionEvents = pgTable(
  'execution_events',
  {
    executionId: uuid('execution_id')
      .notNull()
      .references(() => executions.id),
    seq: integer('seq').notNull(),
    type: text('type').notNull(),
    data: jsonb('data').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.executionId, t.seq] }), check('execution_events_seq_nonnegative', sql`${t.seq} >= 0`)],
);

/** The active version of each workflow with its bundle: what a spawn resolves. */
export const activeWorkflowVersions = pgView('active_workflow_versions').as((qb) =>
  qb
    .select({
      workflowId: sql<string>`${workflows.id}`.as('workflow_id'),
      tenantId: sql<string>`${workflows.tenantId}`.as('tenant_id'),
      workflowName: sql<string>`${workflows.name}`.as('workflow_name'),
      versionId: sql<string>`${workflowVersions.id}`.as('version_id'),
      version: sql<number>`${workflowVersions.version}`.as('version'),
      bundleHash: sql<string>`${workflowVersions.bundleHash}`.as('bundle_hash'),
      size: sql<number>`${bundles.size}`.mapWith(Number).as('size'),
    })
    .from(workflows)
    .innerJoin(workflowVersions, sql`${workflowVersions.id} = ${workflows.activeVersionId}`)
    .innerJoin(bundles, sql`${bundles.hash} = ${workflowVersions.bundleHash}`),
);
