/**
 * What keeps bundle uploads from exhausting the registry (each open upload holds a socket
 * and a temporary file or multipart upload): at most SWARM_MAX_UPLOADS_PER_TOKEN at once
 * per token and SWARM_MAX_UPLOADS in all (429 with Retry-After past either), and a minimum
 * transfer rate, so a client trickling bytes cannot hold its slot (and its file
 * descriptors) for ever. With the caps, descriptors stay free for health checks and resolves.
 */
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { RegistryError } from '../errors.js';
import type { Principal } from '../services/context.js';

/** What a refused upload is told to wait: uploads take seconds to minutes, so a few seconds. */
export const UPLOAD_RETRY_AFTER_SECONDS = 5;

/** Counts uploads in progress, per token and in all. */
export class UploadSlots {
  private readonly perToken = new Map<string, number>();
  private total = 0;

  constructor(private readonly limits: { maxPerToken: number; max: number }) {}

  /** Takes a slot for the principal's upload, or refuses with 429; returns what gives it back (once). */
  acquire(p: Principal): () => void {
    // Minted tokens by id; the bootstrap admin token has none and is one token.
    const key = p.tokenId ?? p.name;
    const mine = this.perToken.get(key) ?? 0;
    if (mine >= this.limits.maxPerToken) {
      throw new RegistryError(
        'TOO_MANY_REQUESTS',
        `this token already has ${mine} uploads in progress (the limit is ${this.limits.maxPerToken})`,
        'wait for one to finish, then retry; the limit is SWARM_MAX_UPLOADS_PER_TOKEN',
        { retryAfterSeconds: UPLOAD_RETRY_AFTER_SECONDS },
      );
    }
    if (this.total >= this.limits.max) {
      throw new RegistryError(
        'TOO_MANY_REQUESTS',
        `the registry already has ${this.total} uploads in progress (the limit is ${this.limits.max})`,
        'retry shortly; the limit is SWARM_MAX_UPLOADS',
        { retryAfterSeconds: UPLOAD_RETRY_AFTER_SECONDS },
      );
    }
    this.perToken.set(key, mine + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perToken.get(key) ?? 1) - 1;
      if (left > 0) this.perToken.set(key, left);
      else this.perToken.delete(key);
    };
  }

  /** For tests and diagnostics: uploads in progress. */
  get inProgress(): number {
    return this.total;
  }
}

/**
 * The request body, cut with 408 once a whole window passes in which the client sent
 * fewer than `minBytesPerSecond × window` bytes. A window in which the registry itself
 * held the body back (the store was slow: backpressure) is not held against the client.
 * The source is piped, not destroyed, on a cut: the socket stays open for the answer. The
 * caller destroys the returned stream when the request ends (that stops its timer).
 */
export function withMinimumRate(source: Readable, limits: { minBytesPerSecond: number; rateWindowMs: number }): Readable {
  if (limits.minBytesPerSecond === 0) return source;
  const minBytes = (limits.minBytesPerSecond * limits.rateWindowMs) / 1000;
  let bytes = 0;
  let heldBack = false;
  const guarded = new Transform({
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
      bytes += chunk.length;
      if (!this.push(chunk)) heldBack = true;
      done();
    },
    flush(done: TransformCallback) {
      clearInterval(timer);
      done();
    },
  });
  const timer = setInterval(() => {
    if (bytes < minBytes && !heldBack) {
      guarded.destroy(
        new RegistryError(
          'TIMEOUT',
          `the upload sent ${bytes} bytes in ${limits.rateWindowMs / 1000} s, slower than the minimum of ${limits.minBytesPerSecond} bytes/s; nothing was stored`,
          'upload from a faster link; the minimum is SWARM_UPLOAD_MIN_BYTES_PER_SECOND over SWARM_UPLOAD_RATE_WINDOW_SECONDS',
        ),
      );
    }
    bytes = 0;
    heldBack = false;
  }, limits.rateWindowMs);
  guarded.on('close', () => clearInterval(timer));
  // A cut may come before the service pipes the body (it checks the workflow first): its
  // pipeline then finds the error on the stream; no listener must be needed meanwhile.
  guarded.on('error', () => {});
  source.on('error', (err) => guarded.destroy(err));
  source.pipe(guarded);
  return guarded;
}
