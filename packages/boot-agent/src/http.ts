/**
 * Small requests (metadata service, events) over Node's own http/https client: it is
 * already in memory, where undici would add ~1 MB of code to the agent's bundle and
 * ~20 MB to its resident memory. The whole exchange is bounded by `timeoutMs`, and the
 * answer by `maxBytes`.
 */
import { clientFor } from './transport.js';

export type SmallResponse = { statusCode: number; text: string };

export function smallRequest(
  url: string,
  o: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs: number; maxBytes?: number },
): Promise<SmallResponse> {
  const maxBytes = o.maxBytes ?? 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers = { ...o.headers, ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}) };
    const req = clientFor(u.protocol).request(
      u,
      { method: o.method ?? 'GET', headers, agent: false, signal: AbortSignal.timeout(o.timeoutMs) },
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
    req.on('error', (err) => reject(err.name === 'AbortError' ? new Error(`no answer within ${o.timeoutMs} ms`) : err));
    req.end(o.body);
  });
}
