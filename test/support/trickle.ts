/** A bundle upload that trickles: the attack the upload caps and the minimum rate stop (#12 §3). */
import http from 'node:http';
import { bundleBytes, type TestRegistry } from './registry.js';

export type Answer = { status: number; retryAfter: string | undefined; body: string };

/**
 * POST /internal/bundles of a real bundle of about `declared` bytes (default 1 MiB), sent one
 * byte every `everyMs` (a valid tar.gz so far, so the upload check keeps reading), until the
 * server answers, `stop()` is called, or `maxMs` passed (then it gives up).
 */
export function trickle(
  reg: Pick<TestRegistry, 'url'>,
  token: string,
  workflow: string,
  opts: { everyMs: number; maxMs: number; declared?: number },
) {
  const url = new URL(reg.url);
  const payload = bundleBytes(`trickle ${workflow}`, opts.declared ?? 1024 * 1024);
  let sent = 0;
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
      'content-length': String(payload.length),
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
  timer = setInterval(() => {
    if (sent < payload.length) req.write(payload.subarray(sent, ++sent));
  }, opts.everyMs);
  return { answer, stop };
}
