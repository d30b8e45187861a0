/** A loopback stand-in for the registry's event endpoint: records what agents post with `token`. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Recorded = { executionId: string; seq: number; type: string; data: Record<string, unknown> };

export async function eventRecorder(token = 'agent-token-1') {
  const events: Recorded[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (req.url === '/trpc/executions.appendEvent' && req.headers.authorization === `Bearer ${token}`) {
        // Idempotent by sequence number, as the registry is: the agent retries an event whose
        // answer was slow (2 s), so a loaded machine may deliver one twice.
        const event = JSON.parse(body) as Recorded;
        if (!events.some((e) => e.executionId === event.executionId && e.seq === event.seq)) events.push(event);
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"result":{"data":null}}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    events,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
