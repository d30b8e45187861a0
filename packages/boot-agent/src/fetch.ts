/**
 * Downloads a bundle to a file while hashing it (and handing its bytes to a tap: the agent
 * unpacks while it downloads), over Node's own http/https client:
 * undici 7 (the last line for Node 20) crashes the process with an uncatchable
 * AssertionError when a server closes the connection while the body is paused by
 * backpressure (nodejs/undici#5360, fixed only in undici 8, which needs Node 22), and
 * a download written to disk is paused by backpressure all the time.
 * Bounded in every direction: connect and
 * idle timeouts, a minimum transfer rate (a trickling server is abandoned), a byte cap
 * (a server sending more is cut off), a bounded number of attempts with backoff on 5xx
 * and connection resets, resuming with Range where the server allows it. Redirects are
 * followed only within the same origin.
 */
import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs/promises';
import type http from 'node:http';
import { clientFor } from './transport.js';
import { AgentError } from './errors.js';

export type FetchOptions = {
  url: string;
  /** Exact length when known; the download must match it. */
  expectedSize?: number | undefined;
  maxBytes: number;
  attempts: number;
  connectTimeoutMs: number;
  /** No byte for this long: the attempt fails. */
  idleTimeoutMs: number;
  /** Averaged over `stallWindowMs`, slower than this fails the attempt. */
  minBytesPerSecond: number;
  stallWindowMs: number;
  backoffMs: number;
  onAttempt?: (attempt: number, err: AgentError) => void;
  /** Sees the bytes as they arrive (the agent unpacks while it downloads). */
  tap?: DownloadTap;
};

/**
 * A consumer of the download's bytes while they are written to the file: each chunk with
 * its offset in the file. Offsets follow on from each other, across a resumed attempt too,
 * unless the download started over (a server that ignored a Range, or a write that failed
 * after the tap saw its chunk). The bytes are not verified yet: whatever the tap makes of
 * them must stay out of use until the download's hash is checked. A promise returned
 * holds the download until the tap can take more (it must not reject).
 */
export type DownloadTap = { write(chunk: Buffer, position: number): Promise<void> | undefined };

export const DEFAULT_FETCH = {
  attempts: 4,
  connectTimeoutMs: 5_000,
  idleTimeoutMs: 15_000,
  minBytesPerSecond: 1024,
  stallWindowMs: 10_000,
  backoffMs: 250,
} as const;

export type FetchResult = { hash: string; bytes: number; attempts: number; resumed: boolean };

const MAX_REDIRECTS = 3;
const fetchFailed = (msg: string, retryable = false) => new AgentError('fetch_failed', msg, retryable);
const RETRYABLE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Downloads into `file` (created or truncated); resolves with the sha256 of what was written. */
export async function downloadTo(file: string, opts: FetchOptions): Promise<FetchResult> {
  const limit = opts.expectedSize ?? opts.maxBytes;
  const handle = await fs.open(file, 'w');
  let hash: Hash = createHash('sha256');
  let written = 0;
  let resumed = false;
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const rangeStart = written;
        let url = opts.url;
        let res;
        for (let hop = 0; ; hop++) {
          res = await get(url, rangeStart > 0 ? { range: `bytes=${rangeStart}-` } : {}, opts).catch(
            (err: { code?: string; message: string }) => {
              throw fetchFailed(`cannot reach the store: ${err.code ?? err.message}`, true);
            },
          );
          if (res.statusCode < 300 || res.statusCode >= 400) break;
          res.body.resume();
          const location = res.headers.location;
          const next = typeof location === 'string' ? new URL(location, url) : undefined;
          if (!next || next.origin !== new URL(url).origin) {
            throw fetchFailed(`the store redirected to another host (${next?.host ?? 'no location'}); refused`);
          }
          if (hop >= MAX_REDIRECTS) throw fetchFailed('too many redirects');
          url = next.toString();
        }
        if (res.statusCode === 200 && rangeStart > 0) {
          // The server ignored the range: start over.
          await handle.truncate(0);
          written = 0;
          hash = createHash('sha256');
        } else if (res.statusCode === 206 && rangeStart > 0) {
          resumed = true;
        } else if (res.statusCode !== 200) {
          res.body.resume();
          throw fetchFailed(`the store answered HTTP ${res.statusCode}`, res.statusCode >= 500 || res.statusCode === 429);
        }
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && written + declared > limit) {
          // A destroyed response may still emit 'error'; unheard, it would crash the agent.
          res.body.on('error', () => {});
          res.body.destroy();
          throw new AgentError(
            opts.expectedSize !== undefined ? 'hash_mismatch' : 'unsafe_bundle',
            `the store offers ${written + declared} bytes, more than the expected ${limit}`,
          );
        }
        await pump(
          res.body,
          opts,
          limit,
          async (chunk) => {
            // The file write runs on the threadpool while this thread hashes the chunk and feeds the tap.
            const writing = handle.write(chunk, 0, chunk.length, written);
            let tapped: Promise<void> | undefined;
            try {
              hash.update(chunk);
              tapped = opts.tap?.write(chunk, written);
            } finally {
              await writing; // awaited even when the tap throws: never an unhandled rejection
            }
            await tapped;
            written += chunk.length;
          },
          () => written,
        );
        if (opts.expectedSize !== undefined && written !== opts.expectedSize) {
          throw fetchFailed(`the download ended after ${written} of ${opts.expectedSize} bytes`, true);
        }
        return { hash: hash.digest('hex'), bytes: written, attempts: attempt, resumed };
      } catch (err) {
        const e = toAgentError(err);
        if (!e.retryable || attempt >= opts.attempts) throw e;
        opts.onAttempt?.(attempt, e);
        await new Promise((r) => setTimeout(r, opts.backoffMs * 2 ** (attempt - 1)));
      }
    }
  } finally {
    await handle.close();
  }
}

type Response = { statusCode: number; headers: http.IncomingHttpHeaders; body: http.IncomingMessage };

/** One GET on a fresh connection, with a connect timeout and an idle (no byte) timeout. */
function get(url: string, headers: Record<string, string>, o: Pick<FetchOptions, 'connectTimeoutMs' | 'idleTimeoutMs'>): Promise<Response> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const timeoutError = (what: string) => Object.assign(new Error(`${what} timeout`), { code: 'ETIMEDOUT' });
    const req = clientFor(u.protocol).get(u, { headers, agent: false }, (res) => {
      clearTimeout(connectTimer);
      resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: res });
    });
    const connectTimer = setTimeout(() => req.destroy(timeoutError('connect')), o.connectTimeoutMs);
    req.on('socket', (socket) => socket.once('connect', () => clearTimeout(connectTimer)));
    // Socket inactivity, before the headers and while the body streams.
    req.setTimeout(o.idleTimeoutMs, () => req.destroy(timeoutError('idle')));
    req.on('error', (err) => {
      clearTimeout(connectTimer);
      reject(err);
    });
  });
}

function toAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const code = (err as { code?: string }).code ?? '';
  return fetchFailed(`download interrupted: ${code || (err as Error).message}`, RETRYABLE_CODES.has(code));
}

/** Streams the body into `write`, enforcing the byte cap and the minimum rate. */
async function pump(
  body: AsyncIterable<Buffer> & { destroy(err?: Error): void },
  opts: FetchOptions,
  limit: number,
  write: (chunk: Buffer) => Promise<void>,
  total: () => number,
): Promise<void> {
  const samples: Array<[number, number]> = [[Date.now(), total()]];
  let stalled: AgentError | undefined;
  const watchdog = setInterval(
    () => {
      const now = Date.now();
      samples.push([now, total()]);
      while (samples.length > 1 && now - samples[0]![0] > opts.stallWindowMs) samples.shift();
      const [t0, b0] = samples[0]!;
      if (now - t0 >= opts.stallWindowMs * 0.9 && ((total() - b0) * 1000) / (now - t0) < opts.minBytesPerSecond) {
        stalled = fetchFailed(`the store is sending slower than ${opts.minBytesPerSecond} bytes/s; abandoned`, true);
        body.destroy(stalled);
      }
    },
    Math.max(50, Math.min(1000, opts.stallWindowMs / 10)),
  );
  try {
    for await (const chunk of body) {
      if (total() + chunk.length > limit) {
        body.destroy();
        throw new AgentError(
          opts.expectedSize !== undefined ? 'hash_mismatch' : 'unsafe_bundle',
          `the store sent more than the expected ${limit} bytes; cut off`,
        );
      }
      await write(chunk);
    }
  } catch (err) {
    throw stalled ?? err;
  } finally {
    clearInterval(watchdog);
  }
}
