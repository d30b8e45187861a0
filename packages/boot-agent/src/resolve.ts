/**
 * With no bundle in the metadata: the workflow's active version, from the registry's REST
 * route `GET /internal/workflow/<ref>/active`, over Node's own http client (http.ts). Not
 * the SDK's tRPC client: that (tRPC, undici, the API's whole zod contract) was most of
 * the agent's code, parsed and compiled on every boot in the VM whether or not this path
 * ran. Only the fields a boot uses are read; they are validated as the metadata's bundle
 * is (the caller passes them through the metadata schema), and the bytes are verified
 * against the hash whatever the answer says.
 */
import { AgentError } from './errors.js';
import { smallRequest } from './http.js';

const RESOLVE_TIMEOUT_MS = 30_000;

export type ResolvedBundle = { url: unknown; hash: unknown; size: unknown; treeDigest: unknown; signing: unknown };

export async function resolveActive(apiUrl: string, workflow: string, token: string): Promise<ResolvedBundle> {
  const url = `${apiUrl.replace(/\/+$/, '')}/internal/workflow/${encodeURIComponent(workflow)}/active`;
  const failed = (why: string) => new AgentError('fetch_failed', `cannot resolve ${workflow}: ${why}`);
  const res = await smallRequest(url, {
    headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    timeoutMs: RESOLVE_TIMEOUT_MS,
    maxBytes: 64 * 1024,
  }).catch((err: Error) => {
    throw failed(err.message);
  });
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(res.text) as Record<string, unknown>;
  } catch {
    throw failed(`HTTP ${res.statusCode}, not JSON`);
  }
  if (res.statusCode !== 200) {
    const error = body?.error as { message?: unknown } | undefined;
    throw failed(typeof error?.message === 'string' ? error.message : `HTTP ${res.statusCode}`);
  }
  return {
    url: body.bundleUrl,
    hash: body.bundleHash,
    size: body.size,
    treeDigest: body.treeDigest ?? undefined,
    signing: body.signing ?? undefined,
  };
}
