/**
 * The one error type of the registry. Services throw RegistryError with a code;
 * the transports map the code once (tRPC in trpc/init.ts, REST in http/errors.ts).
 */
import type { RegistryErrorCode } from '@swarm/sdk/contract';

/** The HTTP status of each code (the codes themselves are the contract's REGISTRY_ERROR_CODES). */
export const errorStatus: Record<RegistryErrorCode, number> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNPROCESSABLE_CONTENT: 422,
  TIMEOUT: 408,
  TOO_MANY_REQUESTS: 429,
  INTERNAL_SERVER_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
};

export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    /** What the caller can do about it, shown by the CLI under the message. */
    readonly hint?: string,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
  /** When to try again (REST answers it as Retry-After), for refusals that pass. */
  readonly retryAfterSeconds: number | undefined;
  get status(): number {
    return errorStatus[this.code];
  }
}

/** "field: problem; other: problem" from a zod error, for one-line messages. */
export function describeIssues(issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): string {
  return issues.map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message)).join('; ');
}

export const notFound = (what: string, hint?: string) => new RegistryError('NOT_FOUND', `${what} not found`, hint);

/** SQLSTATE classes that mean "the database is not there", not "your request is wrong". */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[1-3])/;
const NETWORK_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/**
 * Turns anything thrown into a RegistryError: domain errors pass through, known
 * PostgreSQL and network failures get their code, everything else is internal
 * (its message is not shown to callers).
 */
export function toRegistryError(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  const e = findCause(err);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code === '23505') return new RegistryError('CONFLICT', 'already exists');
  if (code === '23503') return new RegistryError('NOT_FOUND', 'a referenced record does not exist');
  // 22021/22P05: a NUL character (or one the encoding cannot hold) in text or jsonb.
  if (code === '23514' || code === '22P02' || code === '22001' || code === '22021' || code === '22P05') {
    return new RegistryError('BAD_REQUEST', 'invalid value');
  }
  if (
    (code && UNAVAILABLE_SQLSTATE.test(code)) ||
    (code && NETWORK_ERRNO.has(code)) ||
    code === 'CONNECTION_CLOSED' ||
    code === 'CONNECT_TIMEOUT' ||
    code === 'CONNECTION_DESTROYED'
  ) {
    return new RegistryError('SERVICE_UNAVAILABLE', 'a backing service is unavailable', 'retry shortly; GET /healthz names what is down', {
      cause: err,
    });
  }
  return new RegistryError('INTERNAL_SERVER_ERROR', 'internal error', undefined, { cause: err });
}

type Coded = { code?: unknown; cause?: unknown };

/** Drizzle wraps driver errors; the SQLSTATE or errno is on the innermost cause. */
function findCause(err: unknown): Coded | undefined {
  let cur = err as Coded | undefined;
  for (let i = 0; i < 5 && cur && typeof cur === 'object'; i++) {
    if (typeof cur.code === 'string') return cur;
    cur = cur.cause as Coded | undefined;
  }
  return undefined;
}
