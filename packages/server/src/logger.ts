import pino, { type DestinationStream, type Logger } from 'pino';
import type { Config } from './config.js';

const SECRET_PARAMS = /([?&](?:signature|x-amz-signature|x-amz-credential|token)=)[^&]*/gi;

/** Strips credentials from a URL before it is logged (signed download URLs, tokens). */
export const redactUrl = (url: string) => url.replace(SECRET_PARAMS, '$1[redacted]');

/**
 * JSON logs (pino). Tokens, secrets and URL signatures never reach them: the
 * Authorization header is not logged, and request URLs are redacted.
 */
export function createLogger(level: Config['logLevel'], destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: ['req.headers.authorization', '*.authorization', '*.token', '*.secrets'], censor: '[redacted]' },
      serializers: {
        req: (req: { method: string; url: string; id?: string }) => ({ id: req.id, method: req.method, url: redactUrl(req.url) }),
        err: pino.stdSerializers.err,
      },
    },
    destination,
  );
}
