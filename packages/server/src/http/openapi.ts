/**
 * OpenAPI 3.1 document of the REST routes (tRPC procedures are described by the SDK's
 * types instead), served at GET /openapi.json. Bodies are generated from the same zod
 * schemas the routes and the SDK use (z.toJSONSchema), so they cannot drift;
 * test/openapi.test.ts checks the paths against the live routes and calls each route
 * for every status documented here.
 */
import { activeVersion, bundle, bundleHash, registryErrorCode, signatureInput, uploadResult } from '@swarm/sdk/contract';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';

/** REST error body, as http/errors.ts sends it. */
export const errorBody = z.object({
  error: z.object({
    code: registryErrorCode,
    message: z.string(),
    hint: z.string().optional(),
  }),
});

/** GET /healthz, as http/health.ts sends it. */
export const healthBody = z.object({
  status: z.string().describe('"ok", or "unavailable: " and what is down'),
  checks: z.object({
    database: z.string().describe('"ok" or "down" ("down: <reason>" for admin and orchestrator tokens)'),
    storage: z.string().describe('"ok" or "down" ("down: <reason>" for admin and orchestrator tokens)'),
  }),
});

/** The components every response refers to, by name. */
export const restSchemas = {
  UploadResult: uploadResult,
  Bundle: bundle,
  ActiveVersion: activeVersion,
  Error: errorBody,
  Health: healthBody,
} as const;
export type RestSchemaName = keyof typeof restSchemas;

const jsonSchema = (schema: z.ZodType) => {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'output' }) as Record<string, unknown>;
  return rest;
};
const ref = (name: RestSchemaName) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: RestSchemaName, description: string) => ({ description, content: { 'application/json': { schema: ref(name) } } });
const error = (description: string) => json('Error', description);
const unauthorized = error('missing or invalid bearer token');
const unexpected = error('anything else: 500 internal error, 503 when PostgreSQL or the store is down (`GET /healthz` names which)');

const workflowRefParam = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'a workflow id, or `tenant/name` with the slash encoded (`acme%2Fhello`)',
  schema: { type: 'string' },
};

export function openApiDocument() {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Swarm bundle registry: REST routes',
      version: '1',
      description:
        'REST routes for shell scripts and curl. Everything else (tenants, workflows, versions, tokens, executions, `system.doctor`) is a tRPC procedure at `/trpc`, typed by `@swarm/sdk`.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an API token (admin, orchestrator or tenant:<slug>)' } },
      schemas: Object.fromEntries(Object.entries(restSchemas).map(([name, schema]) => [name, jsonSchema(schema)])),
    },
    security: [{ bearer: [] }],
    paths: {
      '/internal/bundles': {
        post: {
          operationId: 'uploadBundle',
          summary: 'Upload a bundle as a new version of a workflow',
          parameters: [
            { name: 'workflow', in: 'query', required: true, description: 'workflow id or tenant/name', schema: { type: 'string' } },
            {
              name: 'activate',
              in: 'query',
              required: false,
              description: 'make the new version active',
              schema: { type: 'string', enum: ['true', 'false', '1', '0'] },
            },
            {
              name: 'message',
              in: 'query',
              required: false,
              description: 'what changed, kept in the version history',
              schema: { type: 'string', maxLength: 1000 },
            },
            {
              name: 'X-Bundle-Sha256',
              in: 'header',
              required: false,
              description: 'the sha256 the bytes must have; a mismatch stores nothing',
              schema: jsonSchema(bundleHash),
            },
            ...(
              [
                ['X-Bundle-Statement', "base64 of the signed statement's canonical JSON bytes (docs/signing.md)", 'statement'],
                ['X-Bundle-Signature', 'base64 Ed25519 signature over those bytes by a key of the tenant', 'signature'],
                ['X-Bundle-Key-Id', "the signing key's id (hex sha256 of its SPKI DER)", 'keyId'],
              ] as const
            ).map(([name, description, field]) => ({
              name,
              in: 'header' as const,
              required: false,
              description: `${description}; the three signature headers come together or not at all, checked before a byte is stored`,
              schema: jsonSchema(signatureInput.shape[field]),
            })),
          ],
          requestBody: {
            required: true,
            description: 'the raw tar.gz, streamed; at most SWARM_MAX_BUNDLE_BYTES',
            content: {
              'application/gzip': { schema: { type: 'string', contentMediaType: 'application/gzip' } },
              'application/x-gzip': { schema: { type: 'string', contentMediaType: 'application/gzip' } },
              'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } },
            },
          },
          responses: {
            '201': json('UploadResult', 'a new version was registered'),
            '200': json('UploadResult', "the workflow's newest version already has these bytes (an idempotent retry); nothing new"),
            '400': error(
              'empty body, invalid query or header, a signature the registry cannot accept (docs/signing.md), or the connection closed mid-body',
            ),
            '401': unauthorized,
            '403': error('the token may not change this workflow (orchestrator tokens only read)'),
            '404': error('no such workflow (or one of another tenant)'),
            '413': error('larger than SWARM_MAX_BUNDLE_BYTES'),
            '415': error('a content type other than application/gzip, application/x-gzip or application/octet-stream'),
            '408': error(
              'the body arrived slower than SWARM_UPLOAD_MIN_BYTES_PER_SECOND over SWARM_UPLOAD_RATE_WINDOW_SECONDS; nothing was stored',
            ),
            '422': error(
              "the bytes do not hash to X-Bundle-Sha256 (or to the signed statement's hash), or are a bundle the boot agent would refuse (the message names the entry)",
            ),
            '429': {
              ...error('the token has SWARM_MAX_UPLOADS_PER_TOKEN uploads in progress, or the registry SWARM_MAX_UPLOADS'),
              headers: { 'Retry-After': { description: 'seconds to wait before retrying', schema: { type: 'integer' } } },
            },
            default: unexpected,
          },
        },
      },
      '/internal/bundles/{hash}': {
        get: {
          operationId: 'getBundle',
          summary: "A stored bundle's size and a time-limited download URL",
          parameters: [{ name: 'hash', in: 'path', required: true, schema: jsonSchema(bundleHash) }],
          responses: {
            '200': json('Bundle', 'the bundle and a URL valid for SWARM_URL_TTL_SECONDS'),
            '400': error('not a sha256 hex digest'),
            '401': unauthorized,
            '404': error('no version the token can see uses this bundle'),
            default: unexpected,
          },
        },
      },
      '/internal/workflow/{id}/active': {
        get: {
          operationId: 'resolveActive',
          summary: "A workflow's active version and a download URL for its bundle",
          parameters: [workflowRefParam],
          responses: {
            '200': json('ActiveVersion', 'the active version'),
            '400': error('not a workflow id or tenant/name'),
            '401': unauthorized,
            '404': error('no such workflow, or it has no active version'),
            default: unexpected,
          },
        },
      },
      '/healthz': {
        get: {
          operationId: 'health',
          summary:
            'Whether PostgreSQL and the object store answer (each checked with a 3 s timeout). No token needed; with an admin or orchestrator token a check that failed says why',
          security: [{}, { bearer: [] }],
          responses: {
            '200': json('Health', 'both answer'),
            '503': json('Health', 'something is down; `status` names it'),
          },
        },
      },
      '/metrics': {
        get: {
          operationId: 'metrics',
          summary: 'Prometheus metrics (admin or orchestrator token)',
          responses: {
            '200': { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } },
            '401': unauthorized,
            '403': error("a tenant token: metrics describe every tenant's traffic"),
            default: unexpected,
          },
        },
      },
      '/store/{key}': {
        get: {
          operationId: 'download',
          summary: 'Download a stored object through a URL the registry signed (file store only; with S3 the URLs point at the store)',
          security: [],
          parameters: [
            { name: 'key', in: 'path', required: true, description: 'the object key; may contain `/`', schema: { type: 'string' } },
            { name: 'expires', in: 'query', required: true, schema: { type: 'integer' } },
            { name: 'signature', in: 'query', required: true, schema: { type: 'string' } },
            {
              name: 'Range',
              in: 'header',
              required: false,
              description: 'one range: `bytes=a-b`, `bytes=a-` or `bytes=-n`',
              schema: { type: 'string' },
            },
          ],
          responses: {
            '200': {
              description: 'the object',
              content: { 'application/gzip': { schema: { type: 'string', contentMediaType: 'application/gzip' } } },
            },
            '206': {
              description: 'the requested range',
              content: { 'application/gzip': { schema: { type: 'string', contentMediaType: 'application/gzip' } } },
            },
            '403': error('invalid signature, or the URL expired'),
            '404': error('no such object'),
            '416': { description: 'the range lies outside the object' },
            default: unexpected,
          },
        },
      },
      '/openapi.json': {
        get: {
          operationId: 'openapi',
          summary: 'This document',
          security: [],
          responses: { '200': { description: 'the OpenAPI document', content: { 'application/json': { schema: { type: 'object' } } } } },
        },
      },
    },
  };
}

/** `/internal/bundles/:hash` → `/internal/bundles/{hash}`; Fastify's wildcard `*` is the `{key}` of /store. */
export function openApiPath(fastifyUrl: string): string {
  return fastifyUrl.replace(/:(\w+)/g, '{$1}').replace(/\/\*$/, '/{key}');
}

/** GET /openapi.json (no token: it describes, it reveals nothing). */
export async function openApiRoutes(app: FastifyInstance) {
  const document = JSON.stringify(openApiDocument());
  app.get('/openapi.json', async (_request, reply) => reply.type('application/json').send(document));
}
