import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('configuration', () => {
  it('has defaults that run the embedded registry', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ host: '127.0.0.1', port: 3000, databaseUrl: undefined, s3: undefined, maxBundleBytes: 512 * 1024 * 1024 });
  });

  it('lists every problem at once', () => {
    let err: unknown;
    try {
      loadConfig({
        PORT: 'eighty',
        DATABASE_URL: 'mysql://x',
        S3_ENDPOINT: 'http://127.0.0.1:9000',
        SWARM_ADMIN_TOKEN: 'short',
        SWARM_MAX_BUNDLE_BYTES: '-1',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    for (const name of ['PORT', 'DATABASE_URL', 'S3_ACCESS_KEY', 'SWARM_ADMIN_TOKEN', 'SWARM_MAX_BUNDLE_BYTES'])
      expect(msg).toContain(name);
  });

  it('prepares statements unless SWARM_DB_PREPARE is 0, and refuses another value', () => {
    expect(loadConfig({}).dbPrepare).toBe(true);
    expect(loadConfig({ SWARM_DB_PREPARE: '0' }).dbPrepare).toBe(false);
    expect(() => loadConfig({ SWARM_DB_PREPARE: 'off' })).toThrow(/SWARM_DB_PREPARE/);
  });

  it('signs S3 URLs for S3_PUBLIC_ENDPOINT, defaulting to S3_ENDPOINT', () => {
    const base = { S3_ENDPOINT: 'http://127.0.0.1:9000/', S3_ACCESS_KEY: 'k', S3_SECRET_KEY: 's' };
    expect(loadConfig(base).s3).toMatchObject({
      endpoint: 'http://127.0.0.1:9000',
      publicEndpoint: 'http://127.0.0.1:9000',
      bucket: 'swarm-bundles',
      region: 'us-east-1',
    });
    expect(loadConfig({ ...base, S3_PUBLIC_ENDPOINT: 'http://10.0.2.2:9000' }).s3?.publicEndpoint).toBe('http://10.0.2.2:9000');
  });

  it('refuses a PRIVATE key as SWARM_TRUST_ROOT, and takes the public one', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swarm-config-root-'));
    try {
      const k = generateKeyPairSync('ed25519');
      fs.writeFileSync(path.join(dir, 'root.key'), k.privateKey.export({ type: 'pkcs8', format: 'pem' }));
      fs.writeFileSync(path.join(dir, 'root.pub'), k.publicKey.export({ type: 'spki', format: 'pem' }));
      expect(() => loadConfig({ SWARM_TRUST_ROOT: path.join(dir, 'root.key') })).toThrow(ConfigError);
      expect(() => loadConfig({ SWARM_TRUST_ROOT: path.join(dir, 'root.key') })).toThrow(
        /SWARM_TRUST_ROOT: the trust root is a PRIVATE key/,
      );
      expect(loadConfig({ SWARM_TRUST_ROOT: path.join(dir, 'root.pub') }).trustRoot?.type).toBe('public');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
