/** Exit codes (documented in --help). A failure before the runtime starts exits with one of these. */
export const EXIT = {
  /** Bad usage or metadata. */
  USAGE: 64,
  /** The bytes did not hash to the expected value (after retries). */
  HASH_MISMATCH: 65,
  /** Unsafe or invalid bundle: a refused entry, a cap exceeded, not a gzip'd tar. */
  UNSAFE_BUNDLE: 66,
  /** Not signed as the trust root requires (verify.ts): nothing was unpacked or run. */
  UNTRUSTED: 67,
  /** The store was unreachable or the download failed. */
  FETCH_FAILED: 69,
  /** A bug or an unexpected local failure. */
  INTERNAL: 70,
} as const;

export type FailureReason = 'bad_metadata' | 'hash_mismatch' | 'unsafe_bundle' | 'untrusted' | 'fetch_failed' | 'internal';

const CODES: Record<FailureReason, number> = {
  bad_metadata: EXIT.USAGE,
  hash_mismatch: EXIT.HASH_MISMATCH,
  unsafe_bundle: EXIT.UNSAFE_BUNDLE,
  untrusted: EXIT.UNTRUSTED,
  fetch_failed: EXIT.FETCH_FAILED,
  internal: EXIT.INTERNAL,
};

/** The agent's one error type: a reason (reported in the `failed` event) and a one-line message. */
export class AgentError extends Error {
  override readonly name = 'AgentError';
  constructor(
    readonly reason: FailureReason,
    message: string,
    /** Whether trying the download again may help. */
    readonly retryable = false,
  ) {
    super(message);
  }
  get exitCode(): number {
    return CODES[this.reason];
  }
}
