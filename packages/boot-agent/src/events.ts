/**
 * The agent's link to the registry. First the exchange: the metadata's agent token is a
 * one-time bootstrap credential, traded before the workload starts for a session token
 * that only this process's memory holds (never the environment, a file or an argument).
 * Then best-effort progress events with the session, sent in order, one at a time, each
 * with a short timeout; a registry that is down or refuses an event delays nothing and
 * never stops the workflow. Secrets are never part of an event.
 */
import type http from 'node:http';
import { smallRequest } from './http.js';
import { clientFor } from './transport.js';

export type EventType =
  | 'metadata_loaded'
  | 'cache_hit'
  | 'cache_miss'
  | 'fetched'
  | 'verified'
  | 'signature_verified'
  | 'unpacked'
  | 'runtime_started'
  | 'runtime_exited'
  | 'failed'
  | 'output'
  | 'output_truncated';

/** What the registry tells the agent with its session (heartbeat.ts uses it). */
export type AgentSession = {
  sessionToken: string;
  heartbeatSeconds?: number | undefined;
  timeoutSeconds?: number | null | undefined;
  outputMaxBytes?: number | undefined;
};

/** The registry's answer to an event or a heartbeat: whether the execution was cancelled. */
export const cancelRequested = (text: string): boolean => {
  try {
    return (JSON.parse(text) as { result?: { data?: { cancelRequested?: unknown } } }).result?.data?.cancelRequested === true;
  } catch {
    return false;
  }
};

/** Output batches waiting to be sent, at most: past it a batch is dropped (and counted), so the final report is not held up. */
const MAX_QUEUED_OUTPUT = 64;

const SEND_TIMEOUT_MS = 2000;
/** Attempts per event; a 4xx answer is final. */
const SEND_ATTEMPTS = 3;
const FLUSH_TIMEOUT_MS = 10_000;
/** One exchange attempt waits at most this long; attempts repeat until the budget is spent. */
const EXCHANGE_ATTEMPT_MS = 5000;

const log = (msg: string) => process.stderr.write(`swarm-boot-agent: ${msg}\n`);

/** The registry's own words for a refusal (tRPC's error body), else the HTTP status. */
function refusal(res: { statusCode: number; text: string }): string {
  try {
    const message = (JSON.parse(res.text) as { error?: { message?: unknown } }).error?.message;
    if (typeof message === 'string') return `HTTP ${res.statusCode}: ${message.slice(0, 300)}`;
  } catch {}
  return `HTTP ${res.statusCode}`;
}

/**
 * Trades the bootstrap token for a session token, retrying network failures and 5xx
 * answers for up to `budgetMs`; a 4xx answer is final. Undefined when there is no session
 * (logged): the caller then runs the workflow without reporting. The bootstrap token is
 * used here only, and the caller keeps no reference to it.
 */
export async function exchangeBootstrapToken(
  target: { apiUrl: string; executionId: string },
  bootstrapToken: string,
  budgetMs: number,
): Promise<AgentSession | undefined> {
  const deadline = Date.now() + budgetMs;
  let problem = 'no attempt';
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await smallRequest(`${target.apiUrl}/trpc/executions.exchangeToken`, {
        method: 'POST',
        headers: { authorization: `Bearer ${bootstrapToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ executionId: target.executionId }),
        timeoutMs: Math.max(1, Math.min(EXCHANGE_ATTEMPT_MS, deadline - Date.now())),
        maxBytes: 64 * 1024,
      });
      if (res.statusCode === 200) {
        const session = (JSON.parse(res.text) as { result?: { data?: AgentSession } }).result?.data;
        if (typeof session?.sessionToken === 'string' && session.sessionToken) return session;
        problem = 'an answer without a session token';
      } else problem = refusal(res);
      if (res.statusCode >= 400 && res.statusCode < 500) break;
    } catch (err) {
      problem = (err as Error).message;
    }
    const pause = Math.min(250 * 2 ** (attempt - 1), 2000);
    if (Date.now() + pause >= deadline) break;
    await new Promise((r) => setTimeout(r, pause));
  }
  log(`cannot exchange the agent token for a session (${problem}); running the workflow without reporting: cannot report events`);
  return undefined;
}

export class EventReporter {
  private seq = 0;
  private queue: Promise<void> = Promise.resolve();
  /** Set once an event could not be delivered at all: the registry is taken to be down. */
  private warned = false;
  /** Set when the registry no longer takes the session (revoked): later events are not sent. */
  private revoked = false;
  private queuedOutput = 0;
  /** Called when an answer says the execution was cancelled. */
  onCancel: () => void = () => {};
  /**
   * One connection for the events, kept open between them (they go one at a time): a new
   * connection per event cost ~1.5 ms of CPU, and a chatty workflow fills ~100 output
   * batches a second (figure 9 of #16). The agent ends with process.exit, which closes it.
   */
  private readonly connection: http.Agent | undefined;

  constructor(private readonly target: { apiUrl: string; executionId: string; sessionToken: string } | undefined) {
    if (target) this.connection = new (clientFor(new URL(target.apiUrl).protocol).Agent)({ keepAlive: true, maxSockets: 1 });
  }

  /** Queues an output batch; false (not queued) when too many wait already. */
  emitOutput(data: Record<string, unknown>): boolean {
    if (!this.target || this.queuedOutput >= MAX_QUEUED_OUTPUT) return false;
    this.queuedOutput++;
    this.emit('output', data, () => this.queuedOutput--);
    return true;
  }

  emit(type: EventType, data: Record<string, unknown> = {}, sent?: () => void): void {
    if (!this.target) return;
    const { apiUrl, executionId, sessionToken } = this.target;
    const event = { executionId, seq: this.seq++, type, data, at: new Date().toISOString() };
    this.queue = this.queue.then(async () => {
      try {
        await send();
      } finally {
        sent?.();
      }
    });
    const send = async () => {
      if (this.revoked) return;
      // A slow registry (a busy machine) must not lose an event: a lost runtime_exited
      // leaves the execution running for ever. The registry accepts a sequence number
      // once, so a retry after a timeout that did reach it is harmless.
      // Once an event could not be delivered at all, the registry is taken to be down:
      // later events get one attempt each, so a dead registry still delays nothing.
      const attempts = this.warned ? 1 : SEND_ATTEMPTS;
      for (let attempt = 1; ; attempt++) {
        try {
          const res = await smallRequest(`${apiUrl}/trpc/executions.appendEvent`, {
            method: 'POST',
            headers: { authorization: `Bearer ${sessionToken}`, 'content-type': 'application/json' },
            body: JSON.stringify(event),
            timeoutMs: SEND_TIMEOUT_MS,
            agent: this.connection,
          });
          if (res.statusCode >= 400 && res.statusCode < 500) {
            // Refused, not lost: over a cap, or the session is gone. Logged; the workflow carries on.
            log(`the registry refused event #${event.seq} ${type} (${refusal(res)}); carrying on`);
            if (res.statusCode === 401) this.revoked = true;
            return;
          }
          if (res.statusCode >= 500) throw new Error(`HTTP ${res.statusCode}`);
          if (cancelRequested(res.text)) this.onCancel();
          return;
        } catch (err) {
          if (attempt < attempts) {
            await new Promise((r) => setTimeout(r, 250 * attempt));
            continue;
          }
          if (!this.warned) log(`cannot report events (${(err as Error).message}); carrying on`);
          this.warned = true;
          return;
        }
      }
    };
  }

  /**
   * Waits for queued events, at most `timeoutMs`: long enough for the final event's
   * retries on a slow registry; a registry that refuses connections fails at once.
   */
  async flush(timeoutMs = FLUSH_TIMEOUT_MS): Promise<void> {
    await Promise.race([this.queue, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }
}
