/**
 * A loopback stand-in for the registry's agent endpoints, for tests about what the agent
 * reports (the exchange itself is tested against the real registry, exchange.test.ts):
 * trades the bootstrap `token` for a session as the registry does (once per agent run),
 * and records what agents post with that session.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Recorded = { executionId: string; seq: number; type: string; data: Record<string, unknown> };

export async function eventRecorder(token = 'agent-token-1') {
  const events: Recorded[] = [];
  const sessions = new Set<string>();
  let exchanges = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const bearer = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
      if (req.url === '/trpc/executions.exchangeToken' && bearer === token) {
        const session = `session-${++exchanges}`;
        sessions.add(session);
        return res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ result: { data: { sessionToken: session } } }));
      }
      if (req.url === '/trpc/executions.appendEvent' && sessions.has(bearer)) {
        // Idempotent by sequence number, as the registry is: the agent retries an event whose
        // answer was slow (2 s), so a loaded machine may deliver one twice.
        const event = JSON.parse(body) as Recorded;
        if (!events.some((e) => e.executionId === event.executionId && e.seq === event.seq)) events.push(event);
        return res.writeHead(200, { 'content-type': 'application/json' }).end('{"result":{"data":{"accepted":true}}}');
      }
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"missing or invalid agent token"}}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    events,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
