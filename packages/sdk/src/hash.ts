import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SwarmError } from './errors.js';

/** sha256 of a file, streamed; onBytes sees each chunk's length (for progress). */
export async function sha256File(file: string, onBytes?: (n: number) => void): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), async (source) => {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      hash.update(chunk);
      onBytes?.(chunk.length);
    }
  });
  return hash.digest('hex');
}

export type VerifierOptions = {
  /** Fail as soon as more bytes than this pass (a server sending more than declared). */
  maxBytes?: number;
  /** When known, the stream must be exactly this long. */
  expectedSize?: number;
};

/**
 * A pass-through stream that hashes what flows through it and fails at the end unless
 * the sha256 equals `expectedHash` (and the length is right). Put it between a download
 * and the file it is written to: a failed verification fails the whole pipeline.
 */
export class Sha256Verifier extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  constructor(
    readonly expectedHash: string,
    private readonly opts: VerifierOptions = {},
  ) {
    super();
    if (!/^[0-9a-f]{64}$/.test(expectedHash)) throw new SwarmError('INVALID_INPUT', `not a sha256 digest: "${expectedHash}"`);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    const limit = this.opts.expectedSize ?? this.opts.maxBytes;
    if (limit !== undefined && this.bytes > limit) {
      done(new SwarmError('SIZE_MISMATCH', `received more than the expected ${limit} bytes`));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    if (this.opts.expectedSize !== undefined && this.bytes !== this.opts.expectedSize) {
      done(new SwarmError('SIZE_MISMATCH', `received ${this.bytes} bytes, expected ${this.opts.expectedSize}`));
      return;
    }
    const actual = this.hash.digest('hex');
    if (actual !== this.expectedHash) {
      done(new SwarmError('HASH_MISMATCH', `sha256 of the received bytes is ${actual}, expected ${this.expectedHash}`));
      return;
    }
    done();
  }
}

export const createSha256Verifier = (expectedHash: string, opts?: VerifierOptions) => new Sha256Verifier(expectedHash, opts);
