/** A bundle upload that trickles: the attack the upload caps and the minimum rate stop (#12 §3). */
import http from 'node:http';
import type { TestRegistry } from './registry.js';

export type Answer = { status: number; retryAfter: string | undefined; body: string };

/**
 * POST /internal/bundles declaring `declared` bytes (default 1 MiB) and sending one byte every `everyMs`,
 * until the server answers, `stop()` is called, or `maxMs` passed (then it gives up).
 */
export function trickle(
  reg: Pick<TestRegistry, 'url'>,
  token: string,
  workflow: string,
  opts: { everyMs: number; maxMs: number; declared?: number },
) {
  const url = new URL(reg.url);
  let timer: NodeJS.Timeout | undefined;
  const req = http.request({
    host: url.hostname,
    port: url.port,
    path: `/internal/bundles?workflow=${encodeURIComponent(workflow)}`,
    method: 'POST',
    agent: false,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/gzip',
      'content-length': String(opts.declared ?? 1024 * 1024),
    },
  });
  const stop = () => {
    clearInterval(timer);
    req.destroy();
  };
  const answer = new Promise<Answer>((resolve) => {
    const giveUp = setTimeout(() => {
      stop();
      resolve({ status: 0, retryAfter: undefined, body: 'no answer' });
    }, opts.maxMs);
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => {
        clearTimeout(giveUp);
        stop();
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body });
      });
    });
    req.on('error', () => {
      clearTimeout(giveUp);
      resolve({ status: 0, retryAfter: undefined, body: 'connection closed' });
    });
  });
  req.flushHeaders();
  timer = setInterval(() => req.write(Buffer.from([0x1f])), opts.everyMs);
  return { answer, stop };
}
