import { TRPCClientError } from '@trpc/client';
import { REGISTRY_ERROR_CODES, type RegistryErrorCode } from './contract/vocabulary.js';

/** Failures the SDK finds itself, without an answer from the registry that names one. */
export const LOCAL_ERROR_CODES = [
  /** The registry did not answer (refused, reset, timed out). */
  'NETWORK_ERROR',
  /** Something the caller passed (a flag, a file, a directory) is wrong; nothing was sent. */
  'INVALID_INPUT',
  /** Downloaded bytes are not the ones expected. */
  'HASH_MISMATCH',
  'SIZE_MISMATCH',
  /** An HTTP answer without the registry's error body (a proxy's, or a code this SDK does not know). */
  'HTTP_ERROR',
  /** Anything else; the cause says what. */
  'INTERNAL_ERROR',
] as const;
export type LocalErrorCode = (typeof LOCAL_ERROR_CODES)[number];
export type SwarmErrorCode = RegistryErrorCode | LocalErrorCode;

const isRegistryErrorCode = (code: string): code is RegistryErrorCode => (REGISTRY_ERROR_CODES as readonly string[]).includes(code);

/** A code read off the wire: the registry's own, else HTTP_ERROR. */
export const wireErrorCode = (code: string | undefined): SwarmErrorCode =>
  code !== undefined && isRegistryErrorCode(code) ? code : 'HTTP_ERROR';

/** Every failure the SDK reports: the registry's error code, its message and, where known, what to do. */
export class SwarmError extends Error {
  override readonly name = 'SwarmError';
  constructor(
    /** The registry's code (NOT_FOUND, CONFLICT, …), or one of LOCAL_ERROR_CODES for failures found here. */
    readonly code: SwarmErrorCode,
    message: string,
    readonly hint?: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Normalises tRPC client errors, REST error bodies and network failures to SwarmError. */
export function toSwarmError(err: unknown): SwarmError {
  if (err instanceof SwarmError) return err;
  if (err instanceof TRPCClientError) {
    const data = err.data as { code?: string; httpStatus?: number; hint?: string } | undefined;
    if (data?.code) return new SwarmError(wireErrorCode(data.code), err.message, data.hint, data.httpStatus, { cause: err });
    return networkError(err.cause ?? err);
  }
  return networkError(err);
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

function networkError(err: unknown): SwarmError {
  // fetch wraps the socket error: TypeError('fetch failed') → cause → Error{code}.
  let cur = err as { code?: unknown; cause?: unknown; message?: string } | undefined;
  for (let depth = 0; cur && depth < 5; depth++, cur = cur.cause as typeof cur) {
    if (typeof cur.code === 'string' && NETWORK_CODES.has(cur.code)) {
      return new SwarmError('NETWORK_ERROR', `cannot reach the registry (${cur.code})`, 'is it running? check SWARM_URL', undefined, {
        cause: err,
      });
    }
  }
  return new SwarmError('INTERNAL_ERROR', (err as Error)?.message ?? String(err), undefined, undefined, { cause: err });
}
