/**
 * The SDK's metadata service (Firecracker MMDS V2): by default it answers every session,
 * as Firecracker does; told to answer once (what the drivers do, issue #12 §1), the first
 * GET answered is the last, so a workload reaching it after the agent finds nothing.
 */
import { describe, expect, it } from 'vitest';
import type { VmMetadata } from '../packages/sdk/src/contract/index.js';
import { startMetadataService } from '../packages/sdk/src/orchestrator/index.js';

const doc: VmMetadata = {
  bundle: { url: 'http://127.0.0.1:1/b.tar.gz', hash: 'a'.repeat(64) },
  execution: { id: '6f1c2b9e-3d4a-4e5f-8a7b-1c2d3e4f5a6b', agentToken: 'swa_bootstrap' },
  apiUrl: 'http://127.0.0.1:2',
  secrets: { API_KEY: 'k' },
};

async function session(url: string) {
  const res = await fetch(`${url}/latest/api/token`, { method: 'PUT', headers: { 'x-metadata-token-ttl-seconds': '60' } });
  expect(res.status).toBe(200);
  const token = await res.text();
  return (p: string) => fetch(`${url}${p}`, { headers: { 'x-metadata-token': token, accept: 'application/json' } });
}

describe('startMetadataService', () => {
  it('answers every session by default', async () => {
    const mmds = await startMetadataService(doc);
    try {
      for (let i = 0; i < 2; i++) {
        const get = await session(mmds.url);
        expect(await (await get('/')).json()).toMatchObject({ execution: { agentToken: 'swa_bootstrap' } });
        expect(await (await get('/execution/agentToken')).json()).toBe('swa_bootstrap');
      }
    } finally {
      await mmds.close();
    }
  });

  it('answers once when told to: after the first read, no session gets the document, the token or the secrets', async () => {
    const mmds = await startMetadataService(doc, { once: true });
    try {
      const agent = await session(mmds.url);
      expect(await (await agent('/')).json()).toMatchObject({ execution: { agentToken: 'swa_bootstrap' }, secrets: { API_KEY: 'k' } });
      const workload = await session(mmds.url);
      for (const p of ['/', '/execution', '/execution/agentToken', '/secrets/API_KEY']) {
        expect((await workload(p)).status, p).toBe(404);
        expect((await agent(p)).status, p).toBe(404);
      }
    } finally {
      await mmds.close();
    }
  });

  it('is not used up by a request it refuses (no session token, or nothing at that path)', async () => {
    const mmds = await startMetadataService(doc, { once: true });
    try {
      expect((await fetch(`${mmds.url}/`, { headers: { accept: 'application/json' } })).status).toBe(401);
      const get = await session(mmds.url);
      expect((await get('/no/such/key')).status).toBe(404);
      expect((await get('/')).status).toBe(200);
    } finally {
      await mmds.close();
    }
  });
});
