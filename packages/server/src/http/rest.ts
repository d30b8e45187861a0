/**
 * REST routes for callers that are not TypeScript (shell scripts, curl). They only
 * validate, authorize and call the same services as the tRPC procedures.
 */
import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { bundleHash, signatureInput, uploadQuery, workflowRef } from '@swarm/sdk/contract';
import type { z } from 'zod';
import { RegistryError, describeIssues } from '../errors.js';
import { getBundle, uploadBundle } from '../services/bundles.js';
import type { Deps, Principal } from '../services/context.js';
import { resolveActive } from '../services/versions.js';
import type { Metrics } from './metrics.js';
import { UploadSlots, withMinimumRate } from './upload-guard.js';

/** Content types a bundle upload may declare; anything else is refused with 415. */
export const BUNDLE_CONTENT_TYPES = ['application/gzip', 'application/x-gzip', 'application/octet-stream'];

function parse<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw new RegistryError('BAD_REQUEST', `invalid ${what}: ${describeIssues(r.error.issues)}`);
  }
  return r.data;
}

export type RestOptions = {
  deps: Deps;
  metrics: Metrics;
  principalOf: (request: FastifyRequest) => Promise<Principal>;
};

/** X-Bundle-Statement (base64 of the statement's bytes), X-Bundle-Signature, X-Bundle-Key-Id: all three or none. */
function signatureHeaders(request: FastifyRequest) {
  const h = request.headers;
  const given = [h['x-bundle-statement'], h['x-bundle-signature'], h['x-bundle-key-id']];
  if (given.every((v) => v === undefined)) return undefined;
  const [statement, signature, keyId] = given;
  return parse(
    signatureInput,
    { statement, signature, keyId },
    'signature headers (X-Bundle-Statement, X-Bundle-Signature, X-Bundle-Key-Id, all three)',
  );
}

export async function restRoutes(app: FastifyInstance, { deps, metrics, principalOf }: RestOptions) {
  // Bundle bodies are streamed by the route itself, never parsed or buffered.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(BUNDLE_CONTENT_TYPES, (_request, _payload, done) => done(null));

  const uploadSlots = new UploadSlots(deps.config.uploads);
  app.post('/internal/bundles', async (request, reply) => {
    let release = () => {};
    // The body as the service reads it, under the minimum rate; its timer ends with the request.
    let received: Readable | undefined;
    try {
      const principal = await principalOf(request);
      const slot = uploadSlots.acquire(principal);
      metrics.uploadsInProgress.inc();
      release = () => {
        slot();
        metrics.uploadsInProgress.dec();
      };
      const query = parse(uploadQuery, request.query, 'query');
      const declared = request.headers['x-bundle-sha256'];
      const declaredHash = declared === undefined ? undefined : parse(bundleHash, declared, 'X-Bundle-Sha256 header');
      const length = request.headers['content-length'];
      const signature = signatureHeaders(request);
      received = withMinimumRate(request.raw, deps.config.uploads);
      const result = await uploadBundle(deps, principal, {
        workflow: query.workflow,
        activate: query.activate,
        message: query.message,
        declaredHash,
        declaredSize: length === undefined ? undefined : Number(length),
        signature,
        body: received,
        onBytes: (n) => metrics.uploadBytes.inc(n),
      });
      metrics.uploads.inc({ result: result.created ? 'created' : 'existing' });
      metrics.storedBytes.inc(result.size);
      return reply.status(result.created ? 201 : 200).send(result);
    } catch (thrown) {
      // The client went away mid-body (it closed the connection, or stalled past
      // SWARM_IDLE_TIMEOUT_SECONDS): Node fails the body with "aborted"/ECONNRESET. That is
      // the client's doing, not a backing service being down: no 503, no error in the logs.
      const e = thrown as { code?: unknown; message?: unknown };
      const err =
        !request.raw.complete && e?.code === 'ECONNRESET' && e.message === 'aborted'
          ? new RegistryError('BAD_REQUEST', 'the connection closed before the whole bundle arrived; nothing was stored')
          : thrown;
      metrics.uploads.inc({ result: err instanceof RegistryError ? err.code : 'INTERNAL_SERVER_ERROR' });
      // The rest of a refused body may still be on its way: do not let the client reuse
      // this connection for its next request.
      if (!request.raw.complete) reply.header('connection', 'close');
      throw err;
    } finally {
      received?.destroy();
      release();
    }
  });

  app.get<{ Params: { hash: string } }>('/internal/bundles/:hash', async (request) => {
    const principal = await principalOf(request);
    const hash = parse(bundleHash, request.params.hash, 'bundle hash');
    return getBundle(deps, principal, { hash });
  });

  app.get<{ Params: { id: string } }>('/internal/workflow/:id/active', async (request) => {
    const principal = await principalOf(request);
    const workflow = parse(workflowRef, request.params.id, 'workflow (an id, or tenant%2Fname)');
    return resolveActive(deps, principal, { workflow });
  });
}
