/**
 * Signed bundles on the registry's side (docs/signing.md): tenants' signing keys (public
 * halves, each with the root's delegation), versions' signatures, and the tenant's
 * signature policy applied when a version is released (activate, canary, promote,
 * rollback) and at spawn. The registry is not trusted for code integrity — a VM with a
 * trust root checks the chain itself — this is what keeps honest fleets without a root,
 * and operators, from running what the tenant did not sign.
 */
import type { Delegation, SignatureInput, SignaturePolicy, SigningKey } from '@swarm/sdk/contract';
import { verify } from 'node:crypto';
import { type DelegationPayload, SigningError, keyId, parseStatement, publicKeyFrom, verifyDelegation } from '@swarm/sdk/signing';
import type { DbOrTx, Tx } from '../db/client.js';
import {
  type SigningKeyRow,
  insertSigningKey,
  revokeSigningKey,
  setSignaturePolicy,
  setVersionSignature,
  signingKey,
  signingKeysOf,
  versionSigning,
} from '../db/queries/keys.js';
import { deleteRefusedExecution } from '../db/queries/executions.js';
import type { ReleasedVersion, WorkflowRelease } from '../db/queries/releases.js';
import { notifyReleaseChanged } from '../db/queries/releases.js';
import type { VersionRow } from '../db/queries/versions.js';
import type { WorkflowRow } from '../db/queries/workflows.js';
import { RegistryError, notFound } from '../errors.js';
import { assertCanWrite, findTenant, requireAdmin } from './access.js';
import { changingTenantReleases } from './release-cache.js';
import type { Deps, Principal } from './context.js';

const toSigningKey = (k: SigningKeyRow, tenant: string): SigningKey => ({
  tenant,
  keyId: k.keyId,
  notAfter: k.notAfter.toISOString(),
  createdBy: k.createdBy,
  createdAt: k.createdAt.toISOString(),
  revokedAt: k.revokedAt?.toISOString() ?? null,
});

const badDelegation = (message: string, hint?: string) => new RegistryError('BAD_REQUEST', `the delegation ${message}`, hint);

/**
 * The delegation's payload: verified under the registry's root when one is configured;
 * without one only its shape, its key id and its expiry can be checked.
 */
function checkDelegation(deps: Pick<Deps, 'config'>, delegation: Delegation): DelegationPayload & { notAfterDate: Date } {
  try {
    if (deps.config.trustRoot) {
      const d = verifyDelegation(deps.config.trustRoot, delegation);
      return {
        type: 'swarm.key-delegation.v1',
        tenant: d.tenant,
        keyId: d.keyId,
        publicKey: d.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
        notAfter: d.notAfter.toISOString(),
        notAfterDate: d.notAfter,
      };
    }
    // No root configured: everything but the root's signature.
    const payload = JSON.parse(Buffer.from(delegation.payload, 'base64').toString('utf8')) as DelegationPayload;
    const key = publicKeyFrom(String(payload.publicKey), 'the delegated key');
    if (payload.type !== 'swarm.key-delegation.v1' || keyId(key) !== payload.keyId) throw new SigningError('malformed', 'is malformed');
    const notAfterDate = new Date(payload.notAfter);
    if (Number.isNaN(notAfterDate.getTime())) throw new SigningError('malformed', 'has no valid notAfter');
    if (notAfterDate.getTime() <= Date.now()) throw new SigningError('delegation_expired', `expired at ${payload.notAfter}`);
    return { ...payload, notAfterDate };
  } catch (err) {
    if (err instanceof SigningError) {
      throw badDelegation(
        err.failure === 'bad_root_signature' ? 'is not signed by the trust root (SWARM_TRUST_ROOT)' : `is not valid: ${err.message}`,
        'create it with the root key: swarm trust delegate --root root.key --tenant <slug> --key <name>.pub',
      );
    }
    if (err instanceof SyntaxError) throw badDelegation('payload is not JSON');
    throw err;
  }
}

/** `keys.add`: admin, or the tenant's own token. The delegation must be for this tenant (and verify under the root, when set). */
export async function addSigningKey(
  deps: Deps,
  p: Principal,
  input: { tenant: string; delegation: Delegation },
): Promise<{ key: SigningKey; created: boolean; renewed: boolean }> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  assertCanWrite(p, tenant.id, `tenant "${input.tenant}"`);
  const d = checkDelegation(deps, input.delegation);
  if (d.tenant !== tenant.slug) {
    throw badDelegation(
      `is for tenant "${d.tenant}", not "${tenant.slug}"`,
      `add it to its own tenant (swarm keys add ${d.tenant} …), or delegate this key to ${tenant.slug}`,
    );
  }
  return changingTenantReleases(deps, tenant.id, async (tx, notifyAll) => {
    const r = await insertSigningKey(tx, {
      tenantId: tenant.id,
      keyId: d.keyId,
      publicKey: d.publicKey,
      delegation: input.delegation,
      notAfter: d.notAfterDate,
      createdBy: p.name,
    });
    if (r.created || r.renewed) await notifyAll();
    deps.log.info({ tenant: tenant.slug, keyId: d.keyId, created: r.created, renewed: r.renewed }, 'signing key added');
    return { key: toSigningKey(r.key, tenant.slug), created: r.created, renewed: r.renewed };
  });
}

export async function listSigningKeys(deps: Deps, p: Principal, input: { tenant: string }): Promise<SigningKey[]> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  return (await signingKeysOf(deps.db, tenant.id)).map((k) => toSigningKey(k, tenant.slug));
}

/** `keys.revoke`: the registry stops accepting the key at release and spawn (VMs: until its delegation expires). */
export async function revokeKey(deps: Deps, p: Principal, input: { tenant: string; keyId: string }): Promise<SigningKey> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  assertCanWrite(p, tenant.id, `tenant "${input.tenant}"`);
  return changingTenantReleases(deps, tenant.id, async (tx, notifyAll) => {
    const row = await revokeSigningKey(tx, tenant.id, input.keyId, p.name);
    if (!row) {
      const existing = await signingKey(tx, tenant.id, input.keyId);
      if (existing?.revokedAt) return toSigningKey(existing, tenant.slug);
      throw notFound(`signing key ${input.keyId} of tenant "${tenant.slug}"`, `list them: swarm keys list ${tenant.slug}`);
    }
    await notifyAll();
    deps.log.info({ tenant: tenant.slug, keyId: input.keyId }, 'signing key revoked');
    return toSigningKey(row, tenant.slug);
  });
}

export async function getSignaturePolicy(
  deps: Deps,
  p: Principal,
  input: { tenant: string },
): Promise<{ tenant: string; signatures: SignaturePolicy }> {
  const tenant = await findTenant(deps.db, p, input.tenant);
  return { tenant: tenant.slug, signatures: tenant.signaturePolicy };
}

/** `policy.set`: admin only (a tenant must not lower its own bar). */
export async function changeSignaturePolicy(
  deps: Deps,
  p: Principal,
  input: { tenant: string; signatures: SignaturePolicy },
): Promise<{ tenant: string; signatures: SignaturePolicy }> {
  requireAdmin(p);
  const tenant = await findTenant(deps.db, p, input.tenant);
  await changingTenantReleases(deps, tenant.id, async (tx, notifyAll) => {
    await setSignaturePolicy(tx, tenant.id, input.signatures);
    await notifyAll();
  });
  deps.log.info({ tenant: tenant.slug, policy: input.signatures }, 'signature policy set');
  return { tenant: tenant.slug, signatures: input.signatures };
}

/** Signature material as a push or `swarm sign` sends it. */
export type { SignatureInput };

/**
 * Checks a signature for a version before it is stored: the key is the tenant's, live and
 * unexpired; the signature verifies under it; the statement names this tenant, workflow
 * and bundle. Throws BAD_REQUEST naming what differs.
 */
export async function checkSignature(
  tx: DbOrTx,
  wf: Pick<WorkflowRow, 'tenantId' | 'tenant' | 'name'>,
  bundleHash: string,
  s: SignatureInput,
): Promise<void> {
  const key = await signingKey(tx, wf.tenantId, s.keyId);
  const hint = `add the key first: swarm keys add ${wf.tenant} <key>.delegation.json`;
  if (!key) throw new RegistryError('BAD_REQUEST', `signing key ${s.keyId} is not a key of tenant "${wf.tenant}"`, hint);
  if (key.revokedAt)
    throw new RegistryError('BAD_REQUEST', `signing key ${s.keyId} was revoked on ${key.revokedAt.toISOString()}`, 'sign with a live key');
  if (key.notAfter.getTime() <= Date.now()) {
    throw new RegistryError(
      'BAD_REQUEST',
      `the delegation of signing key ${s.keyId} expired on ${key.notAfter.toISOString()}`,
      'have the root delegate it again',
    );
  }
  const bytes = Buffer.from(s.statement, 'base64');
  if (!verify(null, bytes, publicKeyFrom(key.publicKey), Buffer.from(s.signature, 'base64'))) {
    throw new RegistryError(
      'BAD_REQUEST',
      `the signature does not verify under key ${s.keyId}`,
      'sign the statement with that key (swarm sign)',
    );
  }
  let statement: ReturnType<typeof parseStatement>;
  try {
    statement = parseStatement(bytes);
  } catch (err) {
    throw new RegistryError('BAD_REQUEST', (err as Error).message);
  }
  const wanted = `${wf.tenant}/${wf.name} bundle ${bundleHash}`;
  const got = `${statement.tenant}/${statement.workflow} bundle ${statement.bundleHash}`;
  if (got !== wanted) throw new RegistryError('BAD_REQUEST', `the statement is about ${got}, not ${wanted}`);
}

/** Inside a registration or `versions.sign`: checks and stores the version's signature. */
export async function attachSignature(tx: Tx, wf: WorkflowRow, version: VersionRow, s: SignatureInput): Promise<void> {
  await checkSignature(tx, wf, version.bundleHash, s);
  await setVersionSignature(tx, version.id, s);
  await notifyReleaseChanged(tx, wf.id);
}

/** Why a version does not count as signed now, or null when it does. */
function signatureProblem(v: {
  signature: unknown | null;
  keyKnown: boolean;
  keyRevoked: boolean;
  keyExpired: boolean;
  keyId: string | null;
}): string | null {
  if (!v.signature) return 'unsigned';
  if (!v.keyKnown) return `signed by key ${v.keyId} which the tenant does not have`;
  if (v.keyRevoked) return `signed only by revoked key ${v.keyId}`;
  if (v.keyExpired) return `signed by key ${v.keyId} whose delegation expired`;
  return null;
}

/**
 * Applies the tenant's policy to a version about to be released (caller holds the
 * workflow's lock): `enforce` refuses a version not properly signed, naming what is
 * missing; `warn` allows it and returns the warning the release history records.
 */
export async function releasePolicy(tx: Tx, versionId: string): Promise<string | undefined> {
  const s = await versionSigning(tx, versionId);
  if (!s || s.policy === 'off') return undefined;
  const problem = signatureProblem({
    signature: s.signature,
    keyKnown: s.keyKnown,
    keyRevoked: s.keyRevokedAt !== null,
    keyExpired: s.keyNotAfter !== null && s.keyNotAfter.getTime() <= Date.now(),
    keyId: s.keyId,
  });
  if (!problem) return undefined;
  const tenant = s.ref.slice(0, s.ref.indexOf('/'));
  if (s.policy === 'enforce') {
    throw new RegistryError(
      'PRECONDITION_FAILED',
      `version ${s.version} of ${s.ref} is ${problem}, and tenant "${tenant}" enforces signatures`,
      `sign it with a live key of the tenant: swarm sign ${s.ref} ${s.version} --key <name>.key`,
    );
  }
  return problem;
}

/**
 * At spawn, from the cached release (no query): refuses a version signed only by a
 * revoked key under `warn` or `enforce` (and an unsigned one under `enforce`), and gives
 * the signature material the VM metadata carries.
 */
export function spawnSignature(
  release: Pick<WorkflowRelease, 'signaturePolicy' | 'workflow'>,
  picked: Pick<ReleasedVersion, 'version' | 'signed'>,
) {
  const ref = `${release.workflow.tenant}/${release.workflow.name}`;
  const signed = picked.signed;
  if (release.signaturePolicy !== 'off') {
    if (signed?.keyRevoked) {
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `version ${picked.version} of ${ref} is signed only by revoked key ${signed.keyId}; spawning it is refused`,
        `release a version signed by a live key (swarm sign ${ref} <version> --key <name>.key, then swarm activate)`,
      );
    }
    // Under enforce, a signature by a key the tenant does not have (no delegation), or whose
    // delegation has expired, counts as none.
    const live = signed?.delegation && signed.keyNotAfter && signed.keyNotAfter.getTime() > Date.now();
    if (!live && release.signaturePolicy === 'enforce') {
      const what = !signed
        ? 'unsigned'
        : !signed.delegation || !signed.keyNotAfter
          ? `signed by key ${signed.keyId}, which is not the tenant's (treated as unsigned)`
          : `signed by key ${signed.keyId}, whose delegation expired ${signed.keyNotAfter.toISOString()} (treated as unsigned)`;
      throw new RegistryError(
        'PRECONDITION_FAILED',
        `version ${picked.version} of ${ref} is ${what}, and tenant "${release.workflow.tenant}" enforces signatures`,
        `sign it: swarm sign ${ref} ${picked.version} --key <name>.key`,
      );
    }
  }
  return signed?.delegation
    ? { statement: signed.statement, signature: signed.signature, keyId: signed.keyId, delegation: signed.delegation }
    : undefined;
}

/** What a spawn's VM metadata carries as `signing`: the material, or nothing for an unsigned version. */
export type SpawnSignature = ReturnType<typeof spawnSignature>;

/**
 * The rare case where the release changed between the cached answer and the spawn's
 * insert: the spawned version's signature, read from the database, under the same rule.
 * A refusal here deletes the execution just inserted (no VM was given it), so none is left pending.
 */
export async function spawnedSignature(deps: Pick<Deps, 'db'>, executionId: string, versionId: string) {
  const s = await versionSigning(deps.db, versionId);
  if (!s) return undefined;
  const [tenant = '', name = ''] = s.ref.split('/');
  try {
    return spawnSignature(
      { signaturePolicy: s.policy, workflow: { tenant, name } as WorkflowRelease['workflow'] },
      {
        version: s.version,
        signed: s.signature ? { ...s.signature, keyRevoked: s.keyRevokedAt !== null, keyNotAfter: s.keyNotAfter } : null,
      },
    );
  } catch (err) {
    await deleteRefusedExecution(deps.db, executionId);
    throw err;
  }
}
