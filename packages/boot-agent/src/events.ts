/**
 * Best-effort progress events to the registry. Sent in order, one at a time, each with a
 * short timeout; a registry that is down delays nothing and never stops the workflow.
 * Secrets are never part of an event.
 */
import { smallRequest } from './http.js';

export type EventType =
  | 'metadata_loaded'
  | 'cache_hit'
  | 'cache_miss'
  | 'fetched'
  | 'verified'
  | 'unpacked'
  | 'runtime_started'
  | 'runtime_exited'
  | 'failed';

const SEND_TIMEOUT_MS = 2000;
/** Attempts per event; a 4xx answer is final. */
const SEND_ATTEMPTS = 3;
const FLUSH_TIMEOUT_MS = 10_000;

export class EventReporter {
  private seq = 0;
  private queue: Promise<void> = Promise.resolve();
  private warned = false;

  constructor(private readonly target: { apiUrl: string; executionId: string; agentToken: string } | undefined) {}

  emit(type: EventType, data: Record<string, unknown> = {}): void {
    if (!this.target) return;
    const { apiUrl, executionId, agentToken } = this.target;
    const event = { executionId, seq: this.seq++, type, data, at: new Date().toISOString() };
    this.queue = this.queue.then(async () => {
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
            headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' },
            body: JSON.stringify(event),
            timeoutMs: SEND_TIMEOUT_MS,
          });
          if (res.statusCode >= 400) throw Object.assign(new Error(`HTTP ${res.statusCode}`), { final: res.statusCode < 500 });
          return;
        } catch (err) {
          if (attempt < attempts && !(err as { final?: boolean }).final) {
            await new Promise((r) => setTimeout(r, 250 * attempt));
            continue;
          }
          if (!this.warned) process.stderr.write(`swarm-boot-agent: cannot report events (${(err as Error).message}); carrying on\n`);
          this.warned = true;
          return;
        }
      }
    });
  }

  /**
   * Waits for queued events, at most `timeoutMs`: long enough for the final event's
   * retries on a slow registry; a registry that refuses connections fails at once.
   */
  async flush(timeoutMs = FLUSH_TIMEOUT_MS): Promise<void> {
    await Promise.race([this.queue, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }
}
