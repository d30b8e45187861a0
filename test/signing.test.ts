/**
 * The signing core (@swarm/sdk/signing): canonical JSON, key ids, delegations under the
 * root, statements under the delegated key, and each way the chain breaks, with its
 * failure code.
 */
import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  SigningError,
  type SignatureMaterial,
  canonicalJson,
  createDelegation,
  generateSigningKey,
  keyId,
  parseDuration,
  parseStatement,
  privateKeyFrom,
  publicKeyFrom,
  signBytes,
  signStatement,
  statementBytes,
  trustedTreeDigest,
  verifyBundleSignature,
  verifyDelegation,
} from '../packages/sdk/src/signing/index.js';

const HASH = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const DAY = 86_400_000;

function setup() {
  const root = generateKeyPairSync('ed25519');
  const tenantKey = generateKeyPairSync('ed25519');
  const delegation = createDelegation(root.privateKey, {
    tenant: 'acme',
    publicKey: tenantKey.publicKey,
    notAfter: new Date(Date.now() + 90 * DAY),
  });
  const signed = signStatement(tenantKey.privateKey, { tenant: 'acme', workflow: 'app', bundleHash: HASH, treeDigest: OTHER });
  const material: SignatureMaterial = { ...signed, delegation };
  return { root, tenantKey, delegation, material };
}

const failure = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof SigningError) return err.failure;
    throw err;
  }
  return 'passed';
};

describe('canonical JSON', () => {
  it('sorts keys at every depth and has no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 'x'], c: null } })).toBe('{"a":{"c":null,"d":[1,"x"]},"b":1}');
  });
  it('leaves out undefined members', () => {
    expect(canonicalJson({ a: undefined, b: true })).toBe('{"b":true}');
  });
  it('refuses numbers that are not safe integers', () => {
    expect(() => canonicalJson({ a: 1.5 })).toThrow(/safe integers/);
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/safe integers/);
  });
});

describe('keys', () => {
  it('key id is the hex sha256 of the SPKI DER, from the public or the private key', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const expected = createHash('sha256')
      .update(publicKey.export({ type: 'spki', format: 'der' }))
      .digest('hex');
    expect(keyId(publicKey)).toBe(expected);
    expect(keyId(privateKey)).toBe(expected);
  });
  it('generates PKCS#8 and SPKI PEM that load back', () => {
    const k = generateSigningKey();
    expect(k.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(k.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(keyId(privateKeyFrom(k.privateKeyPem))).toBe(k.keyId);
    expect(keyId(publicKeyFrom(k.publicKeyPem))).toBe(k.keyId);
  });
  it('refuses a key that is not Ed25519', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(failure(() => publicKeyFrom(rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string))).toBe('malformed');
  });
  it('refuses text that is not a key', () => {
    expect(failure(() => privateKeyFrom('not a key'))).toBe('malformed');
  });
  it('refuses a PRIVATE key where a public key goes (node would derive the public key from it)', () => {
    const k = generateSigningKey();
    expect(failure(() => publicKeyFrom(k.privateKeyPem))).toBe('malformed');
    expect(() => publicKeyFrom(k.privateKeyPem, 'the trust root')).toThrow(/the trust root is a PRIVATE key: give the public key/);
    // Also behind a public block, and as an RSA/EC-style "… PRIVATE KEY" label.
    expect(failure(() => publicKeyFrom(`${k.publicKeyPem}\n${k.privateKeyPem}`))).toBe('malformed');
    expect(failure(() => publicKeyFrom(k.privateKeyPem.replaceAll('PRIVATE KEY', 'EC PRIVATE KEY')))).toBe('malformed');
  });
  it('refuses a PEM that is not a PUBLIC KEY block', () => {
    const k = generateSigningKey();
    const cert = k.publicKeyPem.replaceAll('PUBLIC KEY', 'CERTIFICATE');
    expect(() => publicKeyFrom(cert)).toThrow(/is not a PUBLIC KEY PEM/);
  });
});

describe('statements', () => {
  it('are canonical bytes that parse back', () => {
    const bytes = statementBytes({ tenant: 'acme', workflow: 'app', bundleHash: HASH, created: '2026-01-01T00:00:00.000Z' });
    expect(bytes.toString()).toBe(
      `{"bundleHash":"${HASH}","created":"2026-01-01T00:00:00.000Z","tenant":"acme","type":"swarm.bundle-statement.v1","workflow":"app"}`,
    );
    expect(parseStatement(bytes).workflow).toBe('app');
  });
  it('refuses a malformed statement', () => {
    expect(failure(() => statementBytes({ tenant: 'Acme!', workflow: 'app', bundleHash: HASH }))).toBe('malformed');
    expect(failure(() => statementBytes({ tenant: 'acme', workflow: 'app', bundleHash: 'xyz' }))).toBe('malformed');
  });
  it('refuses statement bytes that are not canonical', () => {
    const bytes = statementBytes({ tenant: 'acme', workflow: 'app', bundleHash: HASH });
    const spaced = Buffer.from(JSON.stringify(JSON.parse(bytes.toString()), null, 1));
    expect(failure(() => parseStatement(spaced))).toBe('malformed');
  });
});

describe('strict parsing', () => {
  const statement = (over: Record<string, unknown>) =>
    Buffer.from(
      canonicalJson({
        type: 'swarm.bundle-statement.v1',
        tenant: 'acme',
        workflow: 'app',
        bundleHash: HASH,
        created: '2026-01-01T00:00:00.000Z',
        ...over,
      }),
    );
  it('takes YYYY-MM-DDTHH:MM:SS(.sss)Z only, and a real date', () => {
    expect(parseStatement(statement({ created: '2026-01-01T00:00:00Z' })).created).toBe('2026-01-01T00:00:00Z');
    for (const created of [
      '2026-01-01',
      '2026-01-01T00:00:00+00:00',
      '2026-02-30T00:00:00Z',
      'Thu, 01 Jan 2026 00:00:00 GMT',
      '2026-01-01T00:00:00.1Z',
    ]) {
      expect(
        failure(() => parseStatement(statement({ created }))),
        created,
      ).toBe('malformed');
    }
  });
  it('refuses bytes that are not UTF-8 (not decoded with replacement characters)', () => {
    const bytes = statement({});
    const bad = Buffer.concat([
      bytes.subarray(0, bytes.indexOf('"app"') + 2),
      Buffer.from([0xff]),
      bytes.subarray(bytes.indexOf('"app"') + 2),
    ]);
    expect(() => parseStatement(bad)).toThrow(/not UTF-8 JSON/);
  });
  it('refuses a root-signed delegation payload with an unknown field, or not canonical', () => {
    const root = generateKeyPairSync('ed25519');
    const key = generateKeyPairSync('ed25519');
    const good = createDelegation(root.privateKey, { tenant: 'acme', publicKey: key.publicKey, notAfter: new Date(Date.now() + DAY) });
    const payload = JSON.parse(Buffer.from(good.payload, 'base64').toString());
    const signed = (bytes: Buffer) => ({
      payload: bytes.toString('base64'),
      signature: signBytes(root.privateKey, bytes),
      rootKeyId: good.rootKeyId,
    });
    expect(verifyDelegation(root.publicKey, signed(Buffer.from(canonicalJson(payload)))).tenant).toBe('acme');
    expect(() => verifyDelegation(root.publicKey, signed(Buffer.from(canonicalJson({ ...payload, admin: true }))))).toThrow(
      /unknown fields admin/,
    );
    expect(() => verifyDelegation(root.publicKey, signed(Buffer.from(JSON.stringify(payload, null, 1))))).toThrow(/not canonical/);
  });
});

describe('the chain root → delegation → statement', () => {
  const expected = { tenant: 'acme', workflow: 'app', bundleHash: HASH, treeDigest: OTHER };

  it('verifies, and the trusted tree digest is the statement’s', () => {
    const { root, material } = setup();
    const s = verifyBundleSignature(root.publicKey, material, expected);
    expect(s.bundleHash).toBe(HASH);
    expect(trustedTreeDigest(s)).toBe(OTHER);
  });
  it('a statement for another bundle hash: wrong_bundle', () => {
    const { root, material } = setup();
    expect(failure(() => verifyBundleSignature(root.publicKey, material, { ...expected, bundleHash: OTHER }))).toBe('wrong_bundle');
  });
  it('a statement for another workflow: wrong_workflow', () => {
    const { root, material } = setup();
    expect(failure(() => verifyBundleSignature(root.publicKey, material, { ...expected, workflow: 'other' }))).toBe('wrong_workflow');
  });
  it('another tenant’s delegated key: wrong_tenant', () => {
    const { root, material } = setup();
    expect(failure(() => verifyBundleSignature(root.publicKey, material, { ...expected, tenant: 'globex' }))).toBe('wrong_tenant');
  });
  it('a tree digest other than the metadata’s: wrong_tree', () => {
    const { root, material } = setup();
    expect(failure(() => verifyBundleSignature(root.publicKey, material, { ...expected, treeDigest: 'c'.repeat(64) }))).toBe('wrong_tree');
  });
  it('a statement without a tree digest verifies, and gives no tree digest to trust (the metadata’s is ignored)', () => {
    const { root, tenantKey, delegation } = setup();
    const noTree: SignatureMaterial = {
      ...signStatement(tenantKey.privateKey, { tenant: 'acme', workflow: 'app', bundleHash: HASH }),
      delegation,
    };
    expect(failure(() => verifyBundleSignature(root.publicKey, noTree, expected))).toBe('passed');
    expect(failure(() => verifyBundleSignature(root.publicKey, noTree, { ...expected, treeDigest: undefined }))).toBe('passed');
    expect(trustedTreeDigest(verifyBundleSignature(root.publicKey, noTree, expected))).toBeUndefined();
  });
  it('a delegation not signed by the root: bad_root_signature', () => {
    const { material } = setup();
    const otherRoot = generateKeyPairSync('ed25519');
    expect(failure(() => verifyBundleSignature(otherRoot.publicKey, material, expected))).toBe('bad_root_signature');
  });
  it('an expired delegation: delegation_expired', () => {
    const { root, material } = setup();
    expect(failure(() => verifyBundleSignature(root.publicKey, material, expected, new Date(Date.now() + 91 * DAY)))).toBe(
      'delegation_expired',
    );
  });
  it('a corrupted signature: bad_signature', () => {
    const { root, material } = setup();
    const sig = Buffer.from(material.signature, 'base64');
    sig[5]! ^= 0x01;
    expect(failure(() => verifyBundleSignature(root.publicKey, { ...material, signature: sig.toString('base64') }, expected))).toBe(
      'bad_signature',
    );
  });
  it('a statement signed by a key other than the delegated one: bad_signature', () => {
    const { root, material } = setup();
    const stranger = generateKeyPairSync('ed25519');
    const forged = signStatement(stranger.privateKey, { tenant: 'acme', workflow: 'app', bundleHash: HASH });
    expect(
      failure(() =>
        verifyBundleSignature(root.publicKey, { ...material, statement: forged.statement, signature: forged.signature }, expected),
      ),
    ).toBe('bad_signature');
  });
  it('a key id other than the delegation’s: wrong_key', () => {
    const { root, material } = setup();
    expect(failure(() => verifyBundleSignature(root.publicKey, { ...material, keyId: OTHER }, expected))).toBe('wrong_key');
  });
  it('a delegation whose payload was edited (another tenant) no longer verifies', () => {
    const { root, material } = setup();
    const payload = JSON.parse(Buffer.from(material.delegation.payload, 'base64').toString());
    payload.tenant = 'globex';
    const edited = { ...material.delegation, payload: Buffer.from(canonicalJson(payload)).toString('base64') };
    expect(
      failure(() => verifyBundleSignature(root.publicKey, { ...material, delegation: edited }, { ...expected, tenant: 'globex' })),
    ).toBe('bad_root_signature');
  });
  it('a statement cannot pass as a delegation (domain separation)', () => {
    const { root } = setup();
    // The root signs a statement-shaped payload: still not a delegation.
    const fake = signStatement(root.privateKey, { tenant: 'acme', workflow: 'app', bundleHash: HASH });
    expect(failure(() => verifyDelegation(root.publicKey, { payload: fake.statement, signature: fake.signature, rootKeyId: 'x' }))).toBe(
      'malformed',
    );
  });
  it('garbage instead of a delegation: malformed', () => {
    const { root } = setup();
    expect(failure(() => verifyDelegation(root.publicKey, { payload: '***', signature: '' }))).toBe('malformed');
    expect(failure(() => verifyDelegation(root.publicKey, null))).toBe('malformed');
  });
  it('the delegated key loads from its base64 SPKI DER', () => {
    const { root, tenantKey, delegation } = setup();
    const d = verifyDelegation(root.publicKey, delegation);
    expect(d.keyId).toBe(keyId(createPublicKey(tenantKey.privateKey)));
  });
});

describe('durations', () => {
  it('reads days, hours and minutes', () => {
    expect(parseDuration('90d')).toBe(90 * DAY);
    expect(parseDuration('12h')).toBe(12 * 3_600_000);
    expect(parseDuration('30m')).toBe(30 * 60_000);
  });
  it('refuses anything else', () => {
    expect(failure(() => parseDuration('90'))).toBe('malformed');
    expect(failure(() => parseDuration('0d'))).toBe('malformed');
  });
});
