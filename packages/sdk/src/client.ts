/**
 * The typed client: `client.trpc` is the tRPC client of the registry's whole API, and
 * the helpers cover what needs more than one call or a stream (uploads, resolving).
 */
import type { KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { type Readable, Transform } from 'node:stream';
import { createTRPCClient, createTRPCClientProxy, httpBatchLink, httpSubscriptionLink, splitLink } from '@trpc/client';
import { EventSource } from 'eventsource';
import { request } from 'undici';
import type { AppRouter } from '../../server/src/trpc/router.js';
import {
  type ActiveVersion,
  EVENTS_PAGE_MAX,
  type ExecutionEvent,
  type SignatureInput,
  type UploadResult,
  bundleHash,
  toUploadResult,
  uploadResult,
} from './contract/index.js';
import { SwarmError, toSwarmError, wireErrorCode } from './errors.js';
import { sha256File } from './hash.js';
import { signBundleFile } from './sign-bundle.js';
import { KeepAliveClient, keepAliveFetch } from './transport.js';

export type SwarmClientOptions = {
  /** Base URL of the registry, e.g. http://127.0.0.1:3000 */
  url: string;
  token: string;
  /**
   * Batch concurrent queries and mutations into one HTTP request (tRPC's httpBatchLink):
   * calls made in the same tick travel together, at most `maxItems` per request (default
   * 50; the registry takes 100). Off by default: each call is its own request on a
   * kept-alive connection, which keeps each call's latency its own (a batch answers when its
   * slowest call does) and, on a fast network, costs less CPU per call than a batch (bench #2c).
   * Batching saves round trips over a slow one.
   */
  batch?: boolean | { maxItems?: number };
};

/** Calls per batched request by default: half the registry's cap (100, TRPC_MAX_BATCH_CALLS). */
export const DEFAULT_BATCH_MAX_ITEMS = 50;
/** Queries in a batch travel in the URL: stay well under the registry's 16 KiB request-line limit. */
const BATCH_MAX_URL_LENGTH = 8 * 1024;

export type UploadProgress = {
  phase: 'hash' | 'upload';
  bytes: number;
  /** Known for files; undefined for streams of unknown length. */
  total: number | undefined;
};

export type UploadOptions = {
  /** `tenant/name` or a workflow id. */
  workflow: string;
  activate?: boolean;
  message?: string;
  onProgress?: (p: UploadProgress) => void;
  /** Sign the bundle with this tenant key (docs/signing.md); needs `workflow` as `tenant/name` and a file. */
  signingKey?: KeyObject;
};

export type UploadOutcome = UploadResult & {
  /** False when the registry already had the bytes and nothing was sent. */
  uploaded: boolean;
};

export function createSwarmClient(opts: SwarmClientOptions) {
  const base = opts.url.replace(/\/+$/, '');
  const authorization = `Bearer ${opts.token}`;
  // A subscription the registry refuses answers an HTTP error before any stream: kept here
  // by execution id, for watchExecution to reject with (EventSource only says "error").
  const refusals = new Map<string, SwarmError>();
  // Subscriptions (executions.watch) stream over SSE; Node 20 has no global EventSource.
  const subscriptions = httpSubscriptionLink({
    url: `${base}/trpc`,
    EventSource,
    eventSourceOptions: {
      fetch: async (input: string | URL | Request, init?: RequestInit) => {
        const res = await fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization } });
        if (!res.ok) await noteRefusal(refusals, String(input instanceof Request ? input.url : input), res);
        return res;
      },
    },
  });
  // Queries and mutations: one request each, straight over undici (transport.ts), or batched
  // by httpBatchLink over undici's request(); either way on undici's kept-alive connections.
  const trpc = opts.batch
    ? createTRPCClient<AppRouter>({
        links: [
          splitLink({
            condition: (op) => op.type === 'subscription',
            true: subscriptions,
            false: httpBatchLink({
              url: `${base}/trpc`,
              headers: () => ({ authorization }),
              fetch: keepAliveFetch,
              maxItems: (typeof opts.batch === 'object' ? opts.batch.maxItems : undefined) ?? DEFAULT_BATCH_MAX_ITEMS,
              maxURLLength: BATCH_MAX_URL_LENGTH,
            }),
          }),
        ],
      })
    : createTRPCClientProxy<AppRouter>(
        new KeepAliveClient<AppRouter>({ url: `${base}/trpc`, headers: { authorization }, links: [subscriptions] }),
      );

  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toSwarmError(err);
    }
  };

  /** Streams bytes to POST /internal/bundles. */
  async function postBundle(
    body: Readable,
    o: UploadOptions & { hash?: string; size?: number; signature?: SignatureInput },
  ): Promise<UploadResult> {
    const query = new URLSearchParams({ workflow: o.workflow });
    if (o.activate) query.set('activate', 'true');
    if (o.message) query.set('message', o.message);
    const headers: Record<string, string> = { authorization, 'content-type': 'application/gzip' };
    if (o.hash) headers['x-bundle-sha256'] = o.hash;
    if (o.size !== undefined) headers['content-length'] = String(o.size);
    if (o.signature) {
      headers['x-bundle-statement'] = o.signature.statement;
      headers['x-bundle-signature'] = o.signature.signature;
      headers['x-bundle-key-id'] = o.signature.keyId;
    }
    let sent = 0;
    const counted = body.pipe(
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          sent += chunk.length;
          o.onProgress?.({ phase: 'upload', bytes: sent, total: o.size });
          done(null, chunk);
        },
      }),
    );
    body.on('error', (err) => counted.destroy(err));
    const res = await call(() =>
      request(`${base}/internal/bundles?${query}`, {
        method: 'POST',
        headers,
        body: counted,
        headersTimeout: 300_000,
        bodyTimeout: 300_000,
      }),
    );
    const json = (await res.body.json().catch(() => null)) as { error?: { code: string; message: string; hint?: string } } | null;
    if (res.statusCode >= 400 || !json) {
      const e = json?.error;
      throw new SwarmError(wireErrorCode(e?.code), e?.message ?? `upload failed with HTTP ${res.statusCode}`, e?.hint, res.statusCode);
    }
    return uploadResult.parse(json);
  }

  return {
    /** The registry's base URL. */
    url: base,
    /** The registry's whole tRPC API, fully typed. */
    trpc,

    /**
     * Uploads a bundle and registers it as a new version of `workflow`. A file is hashed
     * first: if the registry already has those bytes, nothing is sent and the version is
     * registered from the stored bundle. Streams are sent as they come.
     */
    async uploadBundle(source: string | Readable, o: UploadOptions): Promise<UploadOutcome> {
      if (typeof source !== 'string') {
        if (o.signingKey)
          throw new SwarmError('INVALID_INPUT', 'signing needs the bundle as a file (its hash and tree digest are read first)');
        return { ...(await postBundle(source, o)), uploaded: true };
      }
      const st = await fs.stat(source).catch(() => null);
      if (!st?.isFile()) throw new SwarmError('INVALID_INPUT', `${source} is not a file`);
      let hashed = 0;
      const hash = await sha256File(source, (n) => {
        hashed += n;
        o.onProgress?.({ phase: 'hash', bytes: hashed, total: st.size });
      });
      // CONFLICT here means the registry's gc removed these bytes from the store while we
      // registered them (nothing was registered): upload them again, once.
      const gcRaced = (err: unknown) => err instanceof SwarmError && err.code === 'CONFLICT';
      const signed = o.signingKey ? await signBundleFile(source, o.signingKey, o.workflow) : undefined;
      const signature = signed && { statement: signed.statement, signature: signed.signature, keyId: signed.keyId };
      let registered: Awaited<ReturnType<typeof trpc.versions.register.mutate>> | null = null;
      if (await call(() => trpc.bundles.exists.query({ hash }))) {
        registered = await call(() =>
          trpc.versions.register.mutate({
            workflow: o.workflow,
            bundleHash: hash,
            message: o.message,
            activate: o.activate ?? false,
            signature,
          }),
        ).catch((err: unknown) => {
          if (gcRaced(err)) return null;
          throw err;
        });
        // Stored before the registry computed tree digests: the bytes go up once more, so it computes this one.
        if (registered && registered.version.treeDigest !== null) {
          return { ...toUploadResult(registered.version, registered.created), uploaded: false };
        }
      }
      const post = () => postBundle(createReadStream(source, { highWaterMark: 1024 * 1024 }), { ...o, hash, size: st.size, signature });
      const result = await post().catch((err: unknown) => {
        if (gcRaced(err)) return post();
        throw err;
      });
      return { ...result, created: result.created || (registered?.created ?? false), uploaded: true };
    },

    /** The active version of a workflow, with a download URL for its bundle. */
    resolveActive(workflow: string): Promise<ActiveVersion> {
      return call(() => trpc.versions.active.query({ workflow }));
    },

    /**
     * Every event of an execution so far (after `afterSeq`), in order, fetched a page
     * (≤ 1,000 events) at a time as the caller iterates.
     */
    async *executionEvents(id: string, opts: { afterSeq?: number } = {}): AsyncGenerator<ExecutionEvent> {
      let afterSeq = opts.afterSeq ?? -1;
      for (;;) {
        const page = await call(() => trpc.executions.events.query({ id, afterSeq, limit: EVENTS_PAGE_MAX }));
        yield* page;
        if (page.length < EVENTS_PAGE_MAX) return;
        afterSeq = page.at(-1)!.seq;
      }
    },

    /**
     * Streams an execution's events as they happen, resuming after `afterSeq`; resolves
     * when the execution has finished and every event was delivered.
     */
    watchExecution(
      id: string,
      onEvent: (e: ExecutionEvent) => void,
      opts: { afterSeq?: number; signal?: AbortSignal } = {},
    ): Promise<void> {
      return new Promise((resolve, reject) => {
        refusals.delete(id);
        const sub = trpc.executions.watch.subscribe(
          { id, afterSeq: opts.afterSeq },
          {
            onData: (tracked) => onEvent(tracked.data),
            onComplete: () => resolve(),
            onError: (err) => reject(refusals.get(id) ?? toSwarmError(err)),
            // Refused before the stream (401/403/404): the registry's error, not a reconnect loop.
            onConnectionStateChange: (state) => {
              const refused = state.state === 'connecting' && state.error ? refusals.get(id) : undefined;
              if (!refused) return;
              refusals.delete(id);
              sub.unsubscribe();
              reject(refused);
            },
          },
        );
        opts.signal?.addEventListener('abort', () => {
          sub.unsubscribe();
          resolve();
        });
      });
    },

    /** Runs any tRPC call with errors normalised to SwarmError. */
    call,
  };
}

export type SwarmClient = ReturnType<typeof createSwarmClient>;

/** Keeps the registry's refusal of a subscription (tRPC's error body), by the execution id of its input. */
async function noteRefusal(refusals: Map<string, SwarmError>, url: string, res: Response): Promise<void> {
  let id: string | undefined;
  try {
    id = (JSON.parse(new URL(url).searchParams.get('input') ?? '{}') as { id?: string }).id;
  } catch {}
  if (!id) return;
  const body = (await res
    .clone()
    .json()
    .catch(() => null)) as { error?: { message?: string; data?: { code?: string; hint?: string } } } | null;
  const code = body?.error?.data?.code;
  const message = body?.error?.message ?? `HTTP ${res.status}`;
  refusals.set(id, new SwarmError(code ? wireErrorCode(code) : 'INTERNAL_SERVER_ERROR', message, body?.error?.data?.hint, res.status));
}

export const isBundleHash = (s: string) => bundleHash.safeParse(s).success;
