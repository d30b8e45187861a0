/**
 * How the SDK's tRPC calls reach the registry: undici on its pooled, kept-alive connections.
 *
 * `keepAliveLink` is the terminating link for single calls (tRPC's `httpLink` wire format:
 * a query is `GET <url>/<path>?input=<JSON>`, a mutation `POST <url>/<path>` with the JSON
 * body; the answer is tRPC's `{ result: { data } }` or `{ error }` envelope). It hands the
 * request to undici's dispatcher and parses the answer's bytes itself. `httpLink` over a
 * `fetch` costs ~2× the client CPU per call (bench/README.md, figure 2): per call it builds
 * two AbortControllers, merged header objects and a `Response`-shaped object, and undici's
 * `request()`/`fetch()` add a body stream and an abort signal — all on the orchestrator's
 * one JavaScript thread, on a machine it shares with its VMs.
 *
 * `keepAliveFetch` is the `fetch` given to `httpBatchLink`: undici's `request()` answered as
 * the part of a `Response` tRPC's links read (`json()`; the rest is kept as `meta`).
 */
import type { TRPCLink } from '@trpc/client';
import { TRPCClientError } from '@trpc/client';
import type { AnyRouter } from '@trpc/server';
import { observable } from '@trpc/server/observable';
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

/** What a call's answer leaves as tRPC's `meta` (context of a result, `meta` of a TRPCClientError). */
type AnswerMeta = { response: { ok: boolean; status: number; headers: Dispatcher.ResponseData['headers'] }; responseJSON?: unknown };

/**
 * A terminating link sending each query and mutation in its own request, as `httpLink` does.
 * `url` is the tRPC endpoint (`http://host:port/trpc`), `headers` sent with every call.
 */
export function keepAliveLink<TRouter extends AnyRouter>(opts: { url: string; headers: Record<string, string> }): TRPCLink<TRouter> {
  const endpoint = new URL(opts.url);
  const origin = endpoint.origin;
  const prefix = `${endpoint.pathname.replace(/\/$/, '')}/`;
  const getHeaders = opts.headers;
  const postHeaders = { ...opts.headers, 'content-type': 'application/json' };
  return () =>
    ({ op }) =>
      observable((observer) => {
        if (op.type === 'subscription') throw new Error('keepAliveLink does not carry subscriptions: use httpSubscriptionLink');
        const query = op.type === 'query';
        const input = op.input === undefined ? undefined : JSON.stringify(op.input);
        const answer = new Answer(
          (data, meta) => {
            observer.next({ result: { type: 'data', data }, context: meta });
            observer.complete();
          },
          (err) => observer.error(err),
          op.signal,
        );
        getGlobalDispatcher().dispatch(
          {
            origin,
            path: query && input !== undefined ? `${prefix}${op.path}?input=${encodeURIComponent(input)}` : prefix + op.path,
            method: query ? 'GET' : 'POST',
            headers: query ? getHeaders : postHeaders,
            body: query ? undefined : input,
          },
          answer,
        );
        return () => answer.cancel();
      });
}

/**
 * One call's answer as undici delivers it (its dispatch handler): the bytes collected, then
 * parsed as tRPC's envelope. Aborting (the caller's signal, or unsubscribing before the answer)
 * aborts the request through undici's controller; no AbortController per call.
 */
class Answer implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private status = 0;
  private headers: Dispatcher.ResponseData['headers'] = {};
  private chunks: Buffer[] = [];
  private done = false;
  private cancelled = false;
  private readonly onAbort: (() => void) | undefined;

  constructor(
    private readonly settle: (data: unknown, meta: AnswerMeta) => void,
    private readonly fail: (err: TRPCClientError<AnyRouter>) => void,
    private readonly signal: AbortSignal | null | undefined,
  ) {
    if (signal) {
      this.onAbort = () => this.cancel();
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /** Stops a call not answered yet: its promise rejects with the signal's reason (as httpLink's fetch does). */
  cancel(): void {
    if (this.done) return;
    this.cancelled = true;
    this.controller?.abort(this.signal?.reason ?? new DOMException('This operation was aborted', 'AbortError'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.cancelled || this.signal?.aborted) {
      this.cancelled = false;
      this.cancel();
    }
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
      const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      envelope = JSON.parse(body.toString());
      meta.responseJSON = envelope;
    } catch (cause) {
      this.fail(TRPCClientError.from(cause as Error, { meta }));
      return;
    }
    if (envelope && typeof envelope.error === 'object' && typeof envelope.error?.code === 'number') {
      this.fail(TRPCClientError.from(envelope as never, { meta }));
    } else if (envelope && typeof envelope.result === 'object' && envelope.result !== null && !('error' in envelope)) {
      this.settle(envelope.result.data, meta);
    } else {
      this.fail(TRPCClientError.from(new Error('Unable to transform response from server'), { meta }));
    }
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
