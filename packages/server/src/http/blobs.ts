/**
 * Downloads for the fs driver: GET /store/<key>?expires=…&signature=… serves a stored
 * object to whoever holds an unexpired URL signed by this registry (the same trust as
 * an S3 presigned URL). Single byte ranges are honoured so downloads can resume.
 */
import type { FastifyInstance } from 'fastify';
import { RegistryError } from '../errors.js';
import type { FsDriver } from '../storage/fs.js';

export async function blobRoutes(app: FastifyInstance, { driver }: { driver: FsDriver }) {
  app.get<{ Params: { '*': string }; Querystring: { expires?: string; signature?: string } }>('/store/*', async (request, reply) => {
    const key = request.params['*'];
    const expires = Number(request.query.expires);
    const verdict =
      Number.isInteger(expires) && typeof request.query.signature === 'string'
        ? driver.verifySignedUrl(key, expires, request.query.signature)
        : 'invalid';
    if (verdict === 'invalid') throw new RegistryError('FORBIDDEN', 'invalid download signature');
    if (verdict === 'expired') throw new RegistryError('FORBIDDEN', 'download URL expired', 'ask the registry for a fresh URL');
    const info = await driver.stat(key);
    if (!info) throw new RegistryError('NOT_FOUND', 'object not found');

    reply.header('accept-ranges', 'bytes').header('content-type', 'application/gzip');
    const range = parseRange(request.headers.range, info.size);
    if (range === 'unsatisfiable') {
      return reply.status(416).header('content-range', `bytes */${info.size}`).send();
    }
    if (range) {
      reply
        .status(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${info.size}`)
        .header('content-length', range.end - range.start + 1);
      return reply.send(await driver.get(key, { offset: range.start, length: range.end - range.start + 1 }));
    }
    reply.header('content-length', info.size);
    return reply.send(await driver.get(key));
  });
}

/** One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; anything else is served whole. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start > end || start >= size ? 'unsatisfiable' : { start, end };
}
