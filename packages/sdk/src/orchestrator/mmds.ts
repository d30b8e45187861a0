/**
 * A metadata service for one VM, speaking the Firecracker MMDS V2 protocol, so that the
 * boot agent's production code path is the one exercised: `PUT /latest/api/token` with
 * `X-metadata-token-ttl-seconds` returns a session token; every `GET` needs it in
 * `X-metadata-token`, and answers JSON (`Accept: application/json`) or the plain
 * key/value listing. Listens on loopback; the VM reaches it through an explicit forward.
 *
 * `once: true` (what the drivers use): the first GET answered is the last. The document,
 * with its agent token and secrets, is then forgotten and every later GET answers 404, so
 * a workload that reaches the service after the agent read it finds nothing.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type VmMetadata, vmMetadata } from '../contract/metadata.js';

export type MetadataService = { url: string; port: number; close(): Promise<void> };

const MAX_TTL_SECONDS = 21_600;

/** Renders a value as MMDS does without `Accept: application/json`: keys (objects end in "/"), or the value. */
export function renderMmdsListing(value: unknown): string {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    return Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? `${k}/` : k))
      .join('\n');
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export async function startMetadataService(
  doc: VmMetadata,
  opts: { host?: string; port?: number; once?: boolean } = {},
): Promise<MetadataService> {
  let document: VmMetadata | undefined = vmMetadata.parse(doc);
  const tokens = new Map<string, number>(); // token → expiry (ms)
  const server = http.createServer((req, res) => {
    const send = (status: number, body: string, type = 'text/plain') => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      const ttl = Number(req.headers['x-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) return send(400, 'invalid X-metadata-token-ttl-seconds');
      const token = randomBytes(32).toString('base64url');
      tokens.set(token, Date.now() + ttl * 1000);
      return send(200, token);
    }
    if (req.method !== 'GET') return send(405, 'method not allowed');
    const token = req.headers['x-metadata-token'];
    const expiry = typeof token === 'string' ? tokens.get(token) : undefined;
    if (!expiry || expiry < Date.now()) return send(401, 'missing or expired X-metadata-token');
    let value: unknown = document;
    for (const part of (req.url ?? '/').split('?')[0]!.split('/').filter(Boolean)) {
      value = value && typeof value === 'object' ? (value as Record<string, unknown>)[decodeURIComponent(part)] : undefined;
    }
    if (value === undefined) return send(404, 'not found');
    if (opts.once) document = undefined;
    if (req.headers.accept === 'application/json') return send(200, JSON.stringify(value), 'application/json');
    return send(200, renderMmdsListing(value));
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The metadata document as the JSON file a `process` driver hands the agent. */
export const renderMetadataFile = (doc: VmMetadata) => `${JSON.stringify(vmMetadata.parse(doc), null, 2)}\n`;
