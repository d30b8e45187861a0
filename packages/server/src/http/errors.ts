import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { RegistryError, toRegistryError } from '../errors.js';

/** REST error body: `{ error: { code, message, hint? } }`. The one mapping for every REST route. */
export function sendError(request: FastifyRequest, reply: FastifyReply, thrown: unknown): FastifyReply {
  let err: RegistryError;
  const fe = thrown as Partial<FastifyError>;
  if (thrown instanceof RegistryError) {
    err = thrown;
  } else if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || fe.statusCode === 415) {
    err = new RegistryError(
      'UNSUPPORTED_MEDIA_TYPE',
      `unsupported content type "${request.headers['content-type'] ?? ''}"`,
      'send the bundle with Content-Type: application/gzip (or application/octet-stream)',
    );
  } else if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    err = new RegistryError('PAYLOAD_TOO_LARGE', 'request body too large');
  } else if (fe.validation || (fe.statusCode === 400 && fe.code?.startsWith('FST_'))) {
    err = new RegistryError('BAD_REQUEST', fe.message ?? 'bad request');
  } else {
    err = toRegistryError(thrown);
  }
  if (err.status >= 500) request.log.error({ err: thrown }, err.message);
  if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds));
  return reply.status(err.status).send({ error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } });
}
