/**
 * Best-effort progress events to the registry. Sent in order, one at a time, each with a
 * short timeout; a registry that is down delays nothing and never stops the workflow.
 * Secrets are never part of an event.
 */
import { request } from 'undici';

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
      try {
        const res = await request(`${apiUrl}/trpc/executions.appendEvent`, {
          method: 'POST',
          headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' },
          body: JSON.stringify(event),
          headersTimeout: SEND_TIMEOUT_MS,
          bodyTimeout: SEND_TIMEOUT_MS,
          signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
        });
        await res.body.dump();
        if (res.statusCode >= 400) throw new Error(`HTTP ${res.statusCode}`);
      } catch (err) {
        if (!this.warned) process.stderr.write(`swarm-boot-agent: cannot report events (${(err as Error).message}); carrying on\n`);
        this.warned = true;
      }
    });
  }

  /** Waits for queued events, at most `timeoutMs`. */
  async flush(timeoutMs = 3000): Promise<void> {
    await Promise.race([this.queue, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }
}
