/**
 * SwarmError.code is a union: the registry's codes (the contract's REGISTRY_ERROR_CODES)
 * and the SDK's own (LOCAL_ERROR_CODES). A code off the wire outside that list (from a
 * server that is not the registry) is HTTP_ERROR, not passed through as if the SDK knew
 * it. The server here stands in for such a server: it answers every tRPC call with the
 * error it is given.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSwarmClient } from '../packages/sdk/src/index.js';
import { failure } from './support/failure.js';

describe('SwarmError codes from the wire', () => {
  let answer = { status: 409, code: 'CONFLICT' };
  let server: http.Server;
  let url: string;
  beforeAll(async () => {
    server = http.createServer((_req, res) => {
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: { message: 'the message', code: -32600, data: { code: answer.code, httpStatus: answer.status, hint: 'the hint' } },
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const listTenants = () => {
    const client = createSwarmClient({ url, token: 'swt_test' });
    return failure(client.call(() => client.trpc.tenants.list.query()));
  };

  it("keeps the registry's code, message, hint and status", async () => {
    answer = { status: 409, code: 'CONFLICT' };
    expect(await listTenants()).toMatchObject({ code: 'CONFLICT', message: 'the message', hint: 'the hint', status: 409 });
  });

  it('turns a code the registry never sends into HTTP_ERROR, keeping the message', async () => {
    answer = { status: 405, code: 'METHOD_NOT_SUPPORTED' };
    expect(await listTenants()).toMatchObject({ code: 'HTTP_ERROR', message: 'the message', status: 405 });
  });
});
