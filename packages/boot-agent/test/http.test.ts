/**
 * smallRequest over a kept-open connection (events.ts keeps one for its events): a
 * connection that the server dropped meanwhile costs the request nothing.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { expect, it } from 'vitest';
import { smallRequest } from '../src/http.js';

it('sends again on a new connection when the server dropped the kept-open one', async () => {
  // Answers the first request of each connection and drops the connection at its second.
  const requests = new Map<Socket, number>();
  const server = http.createServer((req, res) => {
    const n = (requests.get(req.socket) ?? 0) + 1;
    requests.set(req.socket, n);
    if (n > 1) return req.socket.destroy();
    req.resume();
    req.on('end', () => res.end(`ok ${requests.size}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    expect(await smallRequest(url, { method: 'POST', body: 'first', timeoutMs: 5000, agent })).toEqual({ statusCode: 200, text: 'ok 1' });
    expect(await smallRequest(url, { method: 'POST', body: 'second', timeoutMs: 5000, agent })).toEqual({ statusCode: 200, text: 'ok 2' });
    expect([...requests.values()]).toEqual([2, 1]);
  } finally {
    agent.destroy();
    await new Promise((r) => server.close(r));
  }
});
