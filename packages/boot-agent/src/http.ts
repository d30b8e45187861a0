/**
 * Small requests (metadata service, events) over Node's own http/https client: it is
 * already in memory, where undici would add ~1 MB of code to the agent's bundle and
 * ~20 MB to its resident memory. Each attempt is bounded by `timeoutMs`, and the answer by
 * `maxBytes`. With a kept-open `agent` (events; the MMDS token and document), a request whose
 * reused socket the server had already closed is sent once more: for idempotent requests
 * only. The first request on a fresh agent never goes over a reused socket, so it is never
 * sent twice.
 */
import type http from 'node:http';
import { clientFor } from './transport.js';

export type SmallResponse = { statusCode: number; text: string };

type SmallRequestOptions = {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  maxBytes?: number;
  /**
   * Connections kept open between requests (events.ts); by default each request has its own.
   * For idempotent requests only: one that fails on a kept-open connection the server had
   * closed is sent once more (an event is taken once per seq; a bootstrap token exchange,
   * spent by its first arrival, must never pass one).
   */
  agent?: http.Agent;
};

export async function smallRequest(url: string, o: SmallRequestOptions): Promise<SmallResponse> {
  try {
    return await attempt(url, o);
  } catch (err) {
    // A kept-open connection that the server closed meanwhile fails at once: once more on a new one.
    if ((err as { reusedSocket?: boolean }).reusedSocket) return attempt(url, o);
    throw err;
  }
}

function attempt(url: string, o: SmallRequestOptions): Promise<SmallResponse> {
  const maxBytes = o.maxBytes ?? 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers = { ...o.headers, ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}) };
    const req = clientFor(u.protocol).request(
      u,
      { method: o.method ?? 'GET', headers, agent: o.agent ?? false, signal: AbortSignal.timeout(o.timeoutMs) },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) return req.destroy(new Error(`answer larger than ${maxBytes} bytes`));
          chunks.push(c);
        });
        res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', (err) => {
      if (err.name === 'AbortError') return reject(new Error(`no answer within ${o.timeoutMs} ms`));
      if (req.reusedSocket && (err as NodeJS.ErrnoException).code === 'ECONNRESET') Object.assign(err, { reusedSocket: true });
      reject(err);
    });
    req.end(o.body);
  });
}
