/**
 * How the SDK's tRPC calls reach the registry: undici on its pooled, kept-alive connections.
 *
 * `KeepAliveClient` sends each query and mutation in its own request, in the wire format of
 * tRPC's `httpLink` (a query is `GET <url>/<path>?input=<JSON>`, a mutation `POST <url>/<path>`
 * with the JSON body; the answer is tRPC's `{ result: { data } }` or `{ error }` envelope),
 * straight to undici's dispatcher. The stock path — the client's link chain and observables,
 * `httpLink`, a `fetch` — cost ~6× the client CPU per call (bench/README.md, figure 2):
 * per call three AbortControllers (one aborted, building a DOMException with its stack, on
 * every completed call), several observables and merged option objects, a `Response`, and
 * undici's body stream — all on the orchestrator's one JavaScript thread, on a machine it
 * shares with its VMs.
 *
 * `keepAliveFetch` is the `fetch` given to `httpBatchLink`: undici's `request()` answered as
 * the part of a `Response` tRPC's links read (`json()`; the rest is kept as `meta`).
 */
import { type CreateTRPCClientOptions, TRPCClientError, type TRPCRequestOptions, TRPCUntypedClient } from '@trpc/client';
import type { AnyRouter } from '@trpc/server';
import { type Dispatcher, getGlobalDispatcher, request } from 'undici';

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
  const json = await res.body.json();
  const answer = {
    ok: res.statusCode >= 200 && res.statusCode < 300,
    status: res.statusCode,
    headers: res.headers,
    json: async () => json,
  };
  return answer as unknown as Response;
}

/**
 * tRPC's untyped client (what `createTRPCClientProxy` types as the AppRouter's client) whose
 * queries and mutations go straight to the registry, one request each; subscriptions still
 * go through `links`. A query's or mutation's result and errors are the ones `httpLink`
 * gives: the data, or a `TRPCClientError` carrying the registry's error (code, hint, HTTP
 * status in `data`), the JSON parser's error, or undici's (refused, reset, aborted).
 * `opts.context` of a call is not used: no link sees these calls.
 */
export class KeepAliveClient<TRouter extends AnyRouter> extends TRPCUntypedClient<TRouter> {
  private readonly origin: string;
  /** `/trpc/`: the endpoint's path, procedure paths are appended to. */
  private readonly prefix: string;
  private readonly getHeaders: Record<string, string>;
  private readonly postHeaders: Record<string, string>;

  /** `url`: the tRPC endpoint (`http://host:port/trpc`); `headers` go with every call. */
  constructor(opts: CreateTRPCClientOptions<TRouter> & { url: string; headers: Record<string, string> }) {
    super({ links: opts.links });
    const endpoint = new URL(opts.url);
    this.origin = endpoint.origin;
    this.prefix = `${endpoint.pathname.replace(/\/$/, '')}/`;
    this.getHeaders = opts.headers;
    this.postHeaders = { ...opts.headers, 'content-type': 'application/json' };
  }

  override query(path: string, input?: unknown, opts?: TRPCRequestOptions): Promise<unknown> {
    return this.send('GET', path, input, opts?.signal);
  }

  override mutation(path: string, input?: unknown, opts?: TRPCRequestOptions): Promise<unknown> {
    return this.send('POST', path, input, opts?.signal);
  }

  private send(method: 'GET' | 'POST', path: string, data: unknown, signal: AbortSignal | null | undefined): Promise<unknown> {
    const input = data === undefined ? undefined : JSON.stringify(data);
    const get = method === 'GET';
    return new Promise((resolve, reject) => {
      getGlobalDispatcher().dispatch(
        {
          origin: this.origin,
          path: get && input !== undefined ? `${this.prefix}${path}?input=${encodeURIComponent(input)}` : this.prefix + path,
          method,
          headers: get ? this.getHeaders : this.postHeaders,
          body: get ? undefined : input,
        },
        new Answer(resolve, reject, signal),
      );
    });
  }
}

/** What an answer leaves as `meta` of a TRPCClientError, as httpLink does (its `response`, the parsed body). */
type AnswerMeta = { response: { ok: boolean; status: number; headers: Dispatcher.ResponseData['headers'] }; responseJSON?: unknown };

/**
 * One call's answer as undici delivers it (a dispatch handler): the bytes collected, then
 * read as tRPC's envelope. The caller's signal aborts the request through undici's own
 * controller: no AbortController or body stream per call.
 */
class Answer implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private status = 0;
  private headers: Dispatcher.ResponseData['headers'] = {};
  private chunks: Buffer[] = [];
  private done = false;
  private readonly onAbort: (() => void) | undefined;

  constructor(
    private readonly settle: (data: unknown) => void,
    private readonly fail: (err: TRPCClientError<AnyRouter>) => void,
    private readonly signal: AbortSignal | null | undefined,
  ) {
    if (signal) {
      this.onAbort = () => this.abort();
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /** The call fails with the signal's reason (an AbortError), as a fetch does. */
  private abort(): void {
    if (!this.done) this.controller?.abort(this.signal!.reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.signal?.aborted) this.abort();
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Dispatcher.ResponseData['headers']): void {
    this.status = statusCode;
    this.headers = headers;
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    this.finish();
    const meta: AnswerMeta = { response: { ok: this.status >= 200 && this.status < 300, status: this.status, headers: this.headers } };
    let envelope: { result?: { data?: unknown }; error?: { code?: unknown } };
    try {
      envelope = JSON.parse((this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)).toString());
      meta.responseJSON = envelope;
    } catch (cause) {
      this.fail(TRPCClientError.from(cause as Error, { meta }));
      return;
    }
    // The checks of tRPC's transformResult: an error has a numeric JSON-RPC code, a result is an object.
    if (envelope !== null && typeof envelope === 'object' && 'error' in envelope) {
      if (typeof envelope.error === 'object' && typeof envelope.error?.code === 'number') {
        this.fail(TRPCClientError.from(envelope as Parameters<typeof TRPCClientError.from>[0], { meta }));
        return;
      }
    } else if (envelope !== null && typeof envelope === 'object' && typeof envelope.result === 'object' && envelope.result !== null) {
      this.settle(envelope.result.data);
      return;
    }
    this.fail(TRPCClientError.from(new Error('Unable to transform response from server'), { meta }));
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.finish();
    this.fail(TRPCClientError.from(err));
  }

  private finish(): void {
    this.done = true;
    if (this.onAbort) this.signal!.removeEventListener('abort', this.onAbort);
  }
}
