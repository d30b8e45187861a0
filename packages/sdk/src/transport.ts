/**
 * The `fetch` the SDK's tRPC links use: undici's `request()` on its pooled, kept-alive
 * connections, answered as the small part of a `Response` tRPC's links read (`status`,
 * `ok`, `headers`, `json()`). Node's global `fetch` is undici too, but wraps every call in
 * WHATWG `Request`/`Response` objects, web streams and abort signals: several times the
 * client CPU per call (bench/README.md, figure 2), on the machine the orchestrator shares
 * with its VMs.
 */
import { request } from 'undici';

type FetchInit = { method?: string; headers?: unknown; body?: unknown; signal?: AbortSignal | null };

function plainHeaders(h: unknown): Record<string, string> {
  if (!h) return {};
  if (h instanceof Headers || Array.isArray(h)) return Object.fromEntries(h as Iterable<[string, string]>);
  return h as Record<string, string>;
}

export async function keepAliveFetch(input: string | URL | Request, init: FetchInit = {}): Promise<Response> {
  const res = await request(typeof input === 'string' || input instanceof URL ? input : input.url, {
    method: (init.method ?? 'GET') as 'GET',
    headers: plainHeaders(init.headers),
    body: typeof init.body === 'string' ? init.body : undefined,
    signal: init.signal ?? undefined,
  });
  const text = await res.body.text();
  const headers = new Headers();
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) for (const one of [v].flat()) headers.append(k, one);
  const answer = {
    ok: res.statusCode >= 200 && res.statusCode < 300,
    status: res.statusCode,
    statusText: '',
    headers,
    url: String(input),
    text: async () => text,
    json: async () => JSON.parse(text) as unknown,
  };
  return answer as unknown as Response;
}
