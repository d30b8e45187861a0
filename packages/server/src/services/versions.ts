/**
 * Registering and activating versions. Both lock the workflow's row for the length of
 * their transaction, so version numbers stay gapless under concurrency and exactly one
 * of two racing compare-and-set activations wins.
 */
import type { ActiveVersion, WorkflowVersion } from '@swarm/sdk/contract';
import type { Tx } from '../db/client.js';
import { bundleFacts, bundleState, lockBundle, upsertStoredBundle } from '../db/queries/bundles.js';
import { type VersionRow, insertVersion, newestVersion, versionById, versionsWithSize } from '../db/queries/versions.js';
import { signingKeysOf } from '../db/queries/keys.js';
import { lockWorkflow, workflowById } from '../db/queries/workflows.js';
import { RegistryError } from '../errors.js';
import { bundleVisibleTo, findRelease, findWorkflow, findWritableWorkflow } from './access.js';
import type { Deps, Principal } from './context.js';
import { releasableVersion, setActive } from './releases.js';
import { changingRelease } from './release-cache.js';
import { type SignatureInput, attachSignature, spawnSignature } from './signing.js';

type Registered = { version: WorkflowVersion; created: boolean };

/** Which versions a workflow currently releases: marks a version active or canary. */
type ReleasePointers = { activeVersionId: string | null; canaryVersionId: string | null };

/** Revoked signing keys, by id: whether a version's signature still counts. */
type RevokedKeys = ReadonlySet<string>;

/** A bundle's facts a version shows: its size and tree digest. */
type BundleFacts = { size: number; treeDigest: string | null };

function toWorkflowVersion(
  v: VersionRow,
  bundle: BundleFacts,
  release: ReleasePointers,
  revoked: RevokedKeys = new Set(),
): WorkflowVersion {
  return {
    id: v.id,
    workflowId: v.workflowId,
    version: v.version,
    bundleHash: v.bundleHash,
    size: bundle.size,
    treeDigest: bundle.treeDigest,
    message: v.message,
    createdBy: v.createdBy,
    createdAt: v.createdAt.toISOString(),
    active: v.id === release.activeVersionId,
    canary: v.id === release.canaryVersionId,
    prunedAt: v.prunedAt?.toISOString() ?? null,
    signature: v.signingKeyId ? { keyId: v.signingKeyId, keyRevoked: revoked.has(v.signingKeyId) } : null,
  };
}

async function revokedKeys(db: Parameters<typeof signingKeysOf>[0], tenantId: string): Promise<RevokedKeys> {
  return new Set((await signingKeysOf(db, tenantId)).filter((k) => k.revokedAt).map((k) => k.keyId));
}

/** Version history, newest first, with who registered each and why. */
export async function listVersions(deps: Deps, p: Principal, input: { workflow: string }): Promise<WorkflowVersion[]> {
  const wf = await findWorkflow(deps.db, p, input.workflow);
  const rows = await versionsWithSize(deps.db, wf.id);
  const revoked = await revokedKeys(deps.db, wf.tenantId);
  return rows.map((r) => toWorkflowVersion(r.v, r, wf, revoked));
}

/**
 * Adds a version for a bundle already in the `bundles` table, unless the workflow's
 * newest version has the same hash: then that version is returned (idempotent retry).
 * With `activate`, the version also becomes active (recorded in the activation history).
 */
async function createVersion(
  tx: Tx,
  p: Principal,
  input: {
    workflowId: string;
    bundleHash: string;
    message?: string | undefined;
    activate: boolean;
    signature?: SignatureInput | undefined;
  },
): Promise<Registered> {
  const wf = await lockWorkflow(tx, input.workflowId);
  const newest = await newestVersion(tx, wf.id);
  let version = newest;
  let created = false;
  if (newest?.bundleHash !== input.bundleHash || newest.prunedAt) {
    version = await insertVersion(tx, {
      workflowId: wf.id,
      version: (newest?.version ?? 0) + 1,
      bundleHash: input.bundleHash,
      message: input.message,
      createdBy: p.name,
    });
    created = true;
  }
  // Before any activation, which applies the tenant's signature policy to it.
  if (input.signature) {
    await attachSignature(tx, (await workflowById(tx, wf.id))!, version!, input.signature);
    version = {
      ...version!,
      signatureStatement: input.signature.statement,
      signature: input.signature.signature,
      signingKeyId: input.signature.keyId,
    };
  }
  let release = { activeVersionId: wf.activeVersionId, canaryVersionId: wf.canaryVersionId };
  if (input.activate && release.activeVersionId !== version!.id) {
    await setActive(tx, p, wf, version!.id, 'activate', input.message);
    release = { activeVersionId: version!.id, canaryVersionId: wf.canaryVersionId === version!.id ? null : wf.canaryVersionId };
  }
  const facts = await bundleFacts(tx, input.bundleHash);
  return { version: toWorkflowVersion(version!, facts!, release), created };
}

/** CONFLICT, which the SDK answers by uploading the bytes again. */
const bundleCollected = (hash: string) =>
  new RegistryError(
    'CONFLICT',
    `bundle ${hash} was removed from the store by garbage collection; nothing was registered`,
    'upload the bundle again (swarm push and the SDK do this by themselves)',
  );

/**
 * Inside a registration's transaction: makes sure the bundle's object is in the store and
 * its row says so, under the bundle's lock, so a gc deleting the same bundle either
 * finished before (then the object is missing and the caller must upload again) or
 * starts after (then it sees the new version and keeps the bundle).
 */
async function claimStoredBundle(tx: Tx, deps: Pick<Deps, 'store'>, bundle: StoredBundle): Promise<void> {
  await lockBundle(tx, bundle.hash);
  const object = await deps.store.stat(bundle.hash);
  if (object?.size !== bundle.size) throw bundleCollected(bundle.hash);
  await upsertStoredBundle(tx, bundle);
}

/**
 * Registers a stored bundle as a version of the workflow (the caller checked the
 * principal may write it): claims the bundle, then adds the version, in one transaction.
 * The upload path and `versions.register` both end here.
 */
/** A bundle in the store; `treeDigest` when it was just uploaded (fills a row that lacks one). */
type StoredBundle = { hash: string; size: number; treeDigest?: string | undefined };

export function registerStoredBundle(
  deps: Deps,
  p: Principal,
  workflowId: string,
  bundle: StoredBundle,
  input: { message?: string | undefined; activate: boolean; signature?: SignatureInput | undefined },
): Promise<Registered> {
  return changingRelease(deps, workflowId, async (tx) => {
    await claimStoredBundle(tx, deps, bundle);
    return createVersion(tx, p, {
      workflowId,
      bundleHash: bundle.hash,
      message: input.message,
      activate: input.activate,
      signature: input.signature,
    });
  });
}

export async function registerVersion(
  deps: Deps,
  p: Principal,
  input: {
    workflow: string;
    bundleHash: string;
    expectedHash?: string | undefined;
    message?: string | undefined;
    activate: boolean;
    signature?: SignatureInput | undefined;
  },
): Promise<Registered> {
  if (input.expectedHash !== undefined && input.expectedHash !== input.bundleHash) {
    throw new RegistryError('PRECONDITION_FAILED', `expected bundle ${input.expectedHash}, got ${input.bundleHash}`);
  }
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  const visible = await bundleVisibleTo(deps.db, p, input.bundleHash);
  if (!visible) {
    // Collected, as far as the caller may know: a tenant learns it only of its own bundles.
    const state = await bundleState(deps.db, input.bundleHash, p.scope === 'tenant' ? p.tenantId : null);
    if (state?.deletedAt) throw bundleCollected(input.bundleHash);
    throw new RegistryError('NOT_FOUND', `bundle ${input.bundleHash} not found`, 'upload it first: swarm push, or POST /internal/bundles');
  }
  return registerStoredBundle(deps, p, wf.id, { hash: input.bundleHash, size: visible.size }, input);
}

export async function activateVersion(
  deps: Deps,
  p: Principal,
  input: { workflow: string; version: number; expectedActiveVersion?: number | null | undefined; message?: string | undefined },
): Promise<WorkflowVersion> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    const current = locked.activeVersionId ? await versionById(tx, locked.activeVersionId) : undefined;
    const currentNumber = current?.version ?? null;
    if (input.expectedActiveVersion !== undefined && input.expectedActiveVersion !== currentNumber) {
      throw new RegistryError(
        'CONFLICT',
        `the active version of ${input.workflow} is ${currentNumber ?? 'none'}, not ${input.expectedActiveVersion}`,
        'someone else activated a version meanwhile; check `swarm versions` and retry with the right --expect',
      );
    }
    const target = await releasableVersion(tx, wf, input.version);
    if (locked.activeVersionId !== target.id) {
      await setActive(tx, p, locked, target.id, 'activate', input.message);
    }
    const facts = await bundleFacts(tx, target.bundleHash);
    const canaryVersionId = locked.canaryVersionId === target.id ? null : locked.canaryVersionId;
    return toWorkflowVersion(target, facts!, { activeVersionId: target.id, canaryVersionId }, await revokedKeys(tx, wf.tenantId));
  });
}

/** The active version with a download URL for its bundle: what a spawn resolves. Served from the release cache. */
export async function resolveActive(
  deps: Deps,
  p: Principal,
  input: { workflow: string; storeEndpoint?: string | undefined },
): Promise<ActiveVersion> {
  const release = await findRelease(deps, p, input.workflow);
  const { workflow: wf, active } = release;
  if (!active) {
    throw new RegistryError(
      'NOT_FOUND',
      `workflow "${wf.tenant}/${wf.name}" has no active version`,
      `activate one: swarm activate ${wf.tenant}/${wf.name} <version>`,
    );
  }
  // The spawn's rule: a version signed only by a revoked key, or unsigned under enforce, is not served.
  const signing = spawnSignature(release, active);
  const { url, expiresAt } = await deps.store.signedUrl(active.bundleHash, deps.config.urlTtlSeconds, input.storeEndpoint);
  return {
    workflowId: wf.id,
    tenantId: wf.tenantId,
    versionId: active.versionId,
    version: active.version,
    bundleHash: active.bundleHash,
    size: active.size,
    treeDigest: active.treeDigest,
    bundleUrl: url,
    expiresAt: expiresAt.toISOString(),
    ...(signing ? { signing } : {}),
  };
}

/**
 * `versions.sign`: signs an already registered version (`swarm sign`): the signature is
 * checked like at push and stored; the version's release state does not change.
 */
export async function signVersion(
  deps: Deps,
  p: Principal,
  input: { workflow: string; version: number } & SignatureInput,
): Promise<WorkflowVersion> {
  const wf = await findWritableWorkflow(deps.db, p, input.workflow);
  return changingRelease(deps, wf.id, async (tx) => {
    const locked = await lockWorkflow(tx, wf.id);
    const target = await releasableVersion(tx, wf, input.version);
    const { statement, signature, keyId } = input;
    await attachSignature(tx, wf, target, { statement, signature, keyId });
    const facts = await bundleFacts(tx, target.bundleHash);
    const signed = { ...target, signatureStatement: statement, signature, signingKeyId: keyId };
    return toWorkflowVersion(signed, facts!, locked, await revokedKeys(tx, wf.tenantId));
  });
}
