import { TRPCClientError } from '@trpc/client';

/** Every failure the SDK reports: the registry's error code, its message and, where known, what to do. */
export class SwarmError extends Error {
  override readonly name = 'SwarmError';
  constructor(
    /** The registry's code (NOT_FOUND, CONFLICT, …), or NETWORK_ERROR / INVALID_INPUT for local failures. */
    readonly code: string,
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
    if (data?.code) return new SwarmError(data.code, err.message, data.hint, data.httpStatus, { cause: err });
    return networkError(err.cause ?? err);
  }
  return networkError(err);
}

function networkError(err: unknown): SwarmError {
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ECONNRESET') {
    return new SwarmError('NETWORK_ERROR', `cannot reach the registry (${code})`, 'is it running? check SWARM_URL', undefined, { cause: err });
  }
  return new SwarmError('INTERNAL_ERROR', e.message ?? String(err), undefined, undefined, { cause: err });
}
