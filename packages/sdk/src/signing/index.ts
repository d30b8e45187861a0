/**
 * `@swarm/sdk/signing`: bundle signatures, shared by the SDK (signing at push), the
 * registry (keys, policy) and the boot agent (verifying before it unpacks). Node builtins
 * only (Ed25519 from node:crypto), no zod or tRPC: the boot agent's start-up stays lean.
 *
 * TUF's root → targets delegation, cut to what we need (docs/signing.md):
 * - the platform **root** key (held offline) signs a **delegation** of one tenant key:
 *   `{type, tenant, keyId, publicKey, notAfter}`;
 * - the tenant key signs a **statement** about one bundle:
 *   `{type, tenant, workflow, bundleHash, treeDigest?, created}`.
 * Both are canonical JSON bytes (sorted keys, no whitespace), stored and shipped
 * verbatim; a signature is over exactly those bytes. `type` separates the two domains,
 * so a statement can never pass as a delegation or the reverse.
 * A key id is the lowercase hex sha256 of the public key's SPKI DER.
 */
import { type KeyObject, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';

export const STATEMENT_TYPE = 'swarm.bundle-statement.v1';
export const DELEGATION_TYPE = 'swarm.key-delegation.v1';

/** What the tenant key signs about one bundle. `workflow` is the workflow's name within the tenant. */
export type BundleStatement = {
  type: typeof STATEMENT_TYPE;
  tenant: string;
  workflow: string;
  bundleHash: string;
  treeDigest?: string;
  /** ISO 8601. */
  created: string;
};

/** What the root signs: this tenant may sign with this key until `notAfter` (ISO 8601). */
export type DelegationPayload = {
  type: typeof DELEGATION_TYPE;
  tenant: string;
  keyId: string;
  /** base64 of the SPKI DER. */
  publicKey: string;
  notAfter: string;
};

/** A delegation as a file (`swarm trust delegate -o x.delegation.json`) and in the VM metadata. */
export type Delegation = {
  /** base64 of the canonical JSON bytes of a DelegationPayload. */
  payload: string;
  /** base64 Ed25519 signature by the root over those bytes. */
  signature: string;
  /** The root's key id. */
  rootKeyId: string;
};

/** Why a verification failed: one code a check, the message names what differed. */
export type SigningFailure =
  | 'malformed'
  | 'bad_root_signature'
  | 'delegation_expired'
  | 'wrong_tenant'
  | 'wrong_key'
  | 'bad_signature'
  | 'wrong_workflow'
  | 'wrong_bundle'
  | 'wrong_tree';

export class SigningError extends Error {
  override readonly name = 'SigningError';
  constructor(
    readonly failure: SigningFailure,
    message: string,
  ) {
    super(message);
  }
}

const HEX64 = /^[0-9a-f]{64}$/;
const SLUG = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const NAME = /^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Canonical JSON: object keys sorted by UTF-16 code unit (as JSON.stringify's strings,
 * which is all our keys need: ASCII), no whitespace, `undefined` members left out.
 * Numbers must be safe integers; anything else (floats, NaN, functions) is refused, so
 * two implementations cannot disagree on a number's spelling.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new TypeError(`canonical JSON takes only safe integers, not ${value}`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
}

const spkiDer = (key: KeyObject): Buffer => key.export({ type: 'spki', format: 'der' });

/** The key id: hex sha256 of the public key's SPKI DER. Takes a public or a private key. */
export function keyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256').update(spkiDer(pub)).digest('hex');
}

function requireEd25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') throw new SigningError('malformed', `${what} is a ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}

const PUBLIC_KEY_PEM = /^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----\s*$/;

/**
 * A public key from SPKI PEM (a `PUBLIC KEY` block and nothing else), or base64 SPKI DER
 * (the delegation's form). A private key is refused, though node:crypto would derive the
 * public key from it: a root's private key must never be installed where a public one goes.
 */
export function publicKeyFrom(text: string, what = 'the public key'): KeyObject {
  if (/PRIVATE KEY/.test(text)) {
    throw new SigningError(
      'malformed',
      `${what} is a PRIVATE key: give the public key (the .pub file swarm keys generate wrote), and keep the private one off this machine`,
    );
  }
  if (text.includes('-----BEGIN') && !PUBLIC_KEY_PEM.test(text.trimStart())) {
    throw new SigningError(
      'malformed',
      `${what} is not a PUBLIC KEY PEM (-----BEGIN PUBLIC KEY-----, SPKI; swarm keys generate writes one)`,
    );
  }
  try {
    const key = text.includes('-----BEGIN')
      ? createPublicKey(text)
      : createPublicKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'spki' });
    return requireEd25519(key, what);
  } catch (err) {
    if (err instanceof SigningError) throw err;
    throw new SigningError('malformed', `${what} is not an SPKI public key (${(err as Error).message})`);
  }
}

/** A private key from PKCS#8 PEM. */
export function privateKeyFrom(pem: string, what = 'the private key'): KeyObject {
  try {
    return requireEd25519(createPrivateKey(pem), what);
  } catch (err) {
    if (err instanceof SigningError) throw err;
    throw new SigningError('malformed', `${what} is not a PKCS#8 private key (${(err as Error).message})`);
  }
}

/** A new Ed25519 key pair: PKCS#8 PEM private key, SPKI PEM public key, key id. */
export function generateSigningKey(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    keyId: keyId(publicKey),
  };
}

/** The statement's canonical bytes. */
export function statementBytes(s: Omit<BundleStatement, 'type' | 'created'> & { created?: string }): Buffer {
  const statement: BundleStatement = {
    type: STATEMENT_TYPE,
    tenant: s.tenant,
    workflow: s.workflow,
    bundleHash: s.bundleHash,
    ...(s.treeDigest ? { treeDigest: s.treeDigest } : {}),
    created: s.created ?? new Date().toISOString(),
  };
  checkStatement(statement);
  return Buffer.from(canonicalJson(statement));
}

/** Signs `bytes` with an Ed25519 private key: base64. */
export function signBytes(privateKey: KeyObject, bytes: Buffer): string {
  return sign(null, bytes, privateKey).toString('base64');
}

/** A statement signed with the tenant key: what push and `swarm sign` send the registry. */
export function signStatement(
  privateKey: KeyObject,
  s: Omit<BundleStatement, 'type' | 'created'> & { created?: string },
): { statement: string; signature: string; keyId: string } {
  const bytes = statementBytes(s);
  return { statement: bytes.toString('base64'), signature: signBytes(privateKey, bytes), keyId: keyId(privateKey) };
}

/** The root delegates `publicKey` to `tenant` until `notAfter`. */
export function createDelegation(root: KeyObject, d: { tenant: string; publicKey: KeyObject; notAfter: Date }): Delegation {
  const payload: DelegationPayload = {
    type: DELEGATION_TYPE,
    tenant: d.tenant,
    keyId: keyId(d.publicKey),
    publicKey: spkiDer(d.publicKey).toString('base64'),
    notAfter: d.notAfter.toISOString(),
  };
  checkDelegationPayload(payload);
  const bytes = Buffer.from(canonicalJson(payload));
  return { payload: bytes.toString('base64'), signature: signBytes(root, bytes), rootKeyId: keyId(root) };
}

function parseJsonObject(bytes: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    // fatal: bytes that are not UTF-8 are refused, not replaced (the canonical check then compares bytes).
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new SigningError('malformed', `${what} is not UTF-8 JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SigningError('malformed', `${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/;
/** Strictly `YYYY-MM-DDTHH:MM:SS(.sss)Z`, and a real time (no 2026-02-30). */
const isIso = (v: unknown): v is string =>
  typeof v === 'string' &&
  ISO_UTC.test(v) &&
  !Number.isNaN(Date.parse(v)) &&
  new Date(v).toISOString() === (v.length === 20 ? `${v.slice(0, 19)}.000Z` : v);
const isCanonical = (value: unknown, bytes: Buffer) => Buffer.from(canonicalJson(value)).equals(bytes);

function checkStatement(s: Record<string, unknown>): asserts s is BundleStatement {
  const problems: string[] = [];
  if (s.type !== STATEMENT_TYPE) problems.push(`type must be ${STATEMENT_TYPE}`);
  if (typeof s.tenant !== 'string' || !SLUG.test(s.tenant)) problems.push('tenant must be a tenant slug');
  if (typeof s.workflow !== 'string' || !NAME.test(s.workflow)) problems.push('workflow must be a workflow name');
  if (typeof s.bundleHash !== 'string' || !HEX64.test(s.bundleHash)) problems.push('bundleHash must be 64 lowercase hex');
  if (s.treeDigest !== undefined && (typeof s.treeDigest !== 'string' || !HEX64.test(s.treeDigest)))
    problems.push('treeDigest must be 64 lowercase hex');
  if (!isIso(s.created)) problems.push('created must be an ISO 8601 time');
  const extra = Object.keys(s).filter((k) => !['type', 'tenant', 'workflow', 'bundleHash', 'treeDigest', 'created'].includes(k));
  if (extra.length) problems.push(`unknown fields ${extra.join(', ')}`);
  if (problems.length) throw new SigningError('malformed', `bad statement: ${problems.join('; ')}`);
}

function checkDelegationPayload(d: Record<string, unknown>): asserts d is DelegationPayload {
  const problems: string[] = [];
  if (d.type !== DELEGATION_TYPE) problems.push(`type must be ${DELEGATION_TYPE}`);
  if (typeof d.tenant !== 'string' || !SLUG.test(d.tenant)) problems.push('tenant must be a tenant slug');
  if (typeof d.keyId !== 'string' || !HEX64.test(d.keyId)) problems.push('keyId must be 64 lowercase hex');
  if (typeof d.publicKey !== 'string' || !BASE64.test(d.publicKey)) problems.push('publicKey must be base64 SPKI DER');
  if (!isIso(d.notAfter)) problems.push('notAfter must be an ISO 8601 time');
  const extra = Object.keys(d).filter((k) => !['type', 'tenant', 'keyId', 'publicKey', 'notAfter'].includes(k));
  if (extra.length) problems.push(`unknown fields ${extra.join(', ')}`);
  if (problems.length) throw new SigningError('malformed', `bad delegation: ${problems.join('; ')}`);
}

/** Reads and checks a statement's bytes (no signature check): for display and for the registry's bookkeeping. */
export function parseStatement(bytes: Buffer): BundleStatement {
  const s = parseJsonObject(bytes, 'the statement');
  checkStatement(s);
  if (!isCanonical(s, bytes)) throw new SigningError('malformed', 'the statement is not canonical JSON');
  return s;
}

function decodeBase64(text: unknown, what: string): Buffer {
  if (typeof text !== 'string' || !BASE64.test(text) || text.length === 0) throw new SigningError('malformed', `${what} is not base64`);
  return Buffer.from(text, 'base64');
}

export type VerifiedDelegation = { tenant: string; keyId: string; publicKey: KeyObject; notAfter: Date };

/**
 * Checks a delegation under the root: the root's signature over the payload bytes, the
 * payload's shape, that its key id is its public key's, and (with `now`) that it has not
 * expired. Does not check the tenant: the caller compares with what it expects.
 */
export function verifyDelegation(root: KeyObject, delegation: unknown, now: Date = new Date()): VerifiedDelegation {
  if (typeof delegation !== 'object' || delegation === null) throw new SigningError('malformed', 'the delegation is not an object');
  const d = delegation as Record<string, unknown>;
  const bytes = decodeBase64(d.payload, 'the delegation payload');
  const signature = decodeBase64(d.signature, 'the delegation signature');
  if (!verify(null, bytes, root, signature)) {
    throw new SigningError(
      'bad_root_signature',
      `the delegation is not signed by the trust root (root key ${keyId(root).slice(0, 16)}…, delegation names ${String(d.rootKeyId).slice(0, 16)}…)`,
    );
  }
  const payload = parseJsonObject(bytes, 'the delegation payload');
  checkDelegationPayload(payload);
  if (!isCanonical(payload, bytes)) throw new SigningError('malformed', 'the delegation payload is not canonical JSON');
  const publicKey = publicKeyFrom(payload.publicKey, 'the delegated key');
  if (keyId(publicKey) !== payload.keyId) throw new SigningError('malformed', "the delegation's keyId is not its public key's");
  const notAfter = new Date(payload.notAfter);
  if (notAfter.getTime() <= now.getTime()) {
    throw new SigningError('delegation_expired', `the delegation of key ${payload.keyId.slice(0, 16)}… expired at ${payload.notAfter}`);
  }
  return { tenant: payload.tenant, keyId: payload.keyId, publicKey, notAfter };
}

/** The signature material that travels with a version (and in the VM metadata). */
export type SignatureMaterial = {
  /** base64 of the statement's canonical bytes. */
  statement: string;
  /** base64 Ed25519 signature over those bytes. */
  signature: string;
  keyId: string;
  delegation: Delegation;
};

/** What the verifier knows independently of the signature: from the orchestrator and the bytes it hashed. */
export type BundleExpectation = {
  tenant: string;
  workflow: string;
  bundleHash: string;
  /** The registry's tree digest for the bundle, when the metadata carries one: must equal the statement's. */
  treeDigest?: string | undefined;
};

/**
 * The whole chain, as the boot agent runs it: the delegation verifies under the root, is
 * for the expected tenant and unexpired; the statement verifies under the delegated key
 * (whose id the material names) and names the expected tenant, workflow and bundle hash
 * (and tree digest, when both sides have one). Returns the verified statement; its
 * `treeDigest` is the only one a warm boot may trust (trustedTreeDigest).
 */
export function verifyBundleSignature(
  root: KeyObject,
  material: SignatureMaterial,
  expected: BundleExpectation,
  now: Date = new Date(),
): BundleStatement {
  const delegated = verifyDelegation(root, material.delegation, now);
  if (delegated.tenant !== expected.tenant) {
    throw new SigningError('wrong_tenant', `the signing key is delegated to tenant "${delegated.tenant}", not "${expected.tenant}"`);
  }
  if (material.keyId !== delegated.keyId) {
    throw new SigningError(
      'wrong_key',
      `the signature names key ${String(material.keyId).slice(0, 16)}…, the delegation key ${delegated.keyId.slice(0, 16)}…`,
    );
  }
  const bytes = decodeBase64(material.statement, 'the statement');
  const signature = decodeBase64(material.signature, 'the signature');
  if (!verify(null, bytes, delegated.publicKey, signature)) {
    throw new SigningError('bad_signature', `the statement's signature does not verify under key ${delegated.keyId.slice(0, 16)}…`);
  }
  const s = parseStatement(bytes);
  if (s.tenant !== expected.tenant)
    throw new SigningError('wrong_tenant', `the statement is for tenant "${s.tenant}", not "${expected.tenant}"`);
  if (s.workflow !== expected.workflow) {
    throw new SigningError('wrong_workflow', `the statement is for workflow "${s.workflow}", not "${expected.workflow}"`);
  }
  if (s.bundleHash !== expected.bundleHash) {
    throw new SigningError('wrong_bundle', `the statement is for bundle ${s.bundleHash}, not ${expected.bundleHash}`);
  }
  // A statement without a tree digest (signed by a pipeline that did not compute one) still
  // verifies: the metadata's digest is then simply not trusted (the agent's trust.ts takes
  // only the statement's), and a warm boot checks the cached tree against the archive.
  if (expected.treeDigest !== undefined && s.treeDigest !== undefined && s.treeDigest !== expected.treeDigest) {
    throw new SigningError('wrong_tree', `the statement's tree digest is ${s.treeDigest}, the metadata's ${expected.treeDigest}`);
  }
  return s;
}

/** With a trust root, the only tree digest a warm boot may trust: the verified statement's. */
export const trustedTreeDigest = (verified: BundleStatement): string | undefined => verified.treeDigest;

/** Parses a duration like `90d`, `12h`, `30m` (for --expires): milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,6})([dhm])$/.exec(text.trim());
  if (!m) throw new SigningError('malformed', `"${text}" is not a duration like 90d, 12h or 30m`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[m[2] as 'd' | 'h' | 'm'];
  const ms = Number(m[1]) * unit;
  if (ms <= 0) throw new SigningError('malformed', 'the duration must be positive');
  return ms;
}
