/**
 * The agent's side of watching and stopping an execution. From the session on, a heartbeat
 * every `heartbeatSeconds` (the registry's choice, in the session answer) tells the
 * registry the VM is alive; a registry that stops hearing them marks the execution `lost`.
 * The VM takes no inbound connection: a cancel arrives as `cancelRequested` in the answer
 * to a heartbeat or an event, and stops the workflow (SIGTERM, SIGKILL after the grace
 * period, run.ts). The timeout counts from the workflow's start and stops it the same way.
 */
import type { AgentSession } from './events.js';
import { cancelRequested } from './events.js';
import { smallRequest } from './http.js';

const DEFAULT_HEARTBEAT_SECONDS = 5;
const log = (msg: string) => process.stderr.write(`swarm-boot-agent: ${msg}\n`);

export class ExecutionControl {
  private timer: NodeJS.Timeout | undefined;
  private timeout: NodeJS.Timeout | undefined;
  private stop: ((reason: string) => void) | undefined;
  private cancelled = false;
  private warned = false;

  constructor(
    private readonly target: { apiUrl: string; executionId: string } | undefined,
    private readonly session: AgentSession | undefined,
  ) {}

  /** Heartbeats from now until `finish()`. */
  start(): void {
    const { target, session } = this;
    if (!target || !session) return;
    const intervalMs = (session.heartbeatSeconds ?? DEFAULT_HEARTBEAT_SECONDS) * 1000;
    let inFlight = false;
    this.timer = setInterval(async () => {
      if (inFlight) return;
      inFlight = true;
      try {
        const res = await smallRequest(`${target.apiUrl}/trpc/executions.heartbeat`, {
          method: 'POST',
          headers: { authorization: `Bearer ${session.sessionToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ executionId: target.executionId }),
          timeoutMs: Math.max(1000, intervalMs),
          maxBytes: 64 * 1024,
        });
        if (res.statusCode === 200 && cancelRequested(res.text)) this.cancel();
        // The session is gone (the execution ended without us): nothing more to say.
        if (res.statusCode === 401) this.finish();
      } catch (err) {
        if (!this.warned) log(`heartbeat failed (${(err as Error).message}); carrying on`);
        this.warned = true;
      } finally {
        inFlight = false;
      }
    }, intervalMs);
    this.timer.unref();
  }

  /** The registry asked to stop: the workflow is stopped now, or at its start. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    log('the execution was cancelled: stopping the workflow');
    this.stop?.('cancelled');
  }

  /** The workflow started: `stop` ends it; the timeout starts counting. */
  started(stop: (reason: string) => void): void {
    this.stop = stop;
    if (this.cancelled) {
      stop('cancelled');
      return;
    }
    const seconds = this.session?.timeoutSeconds;
    if (seconds) {
      this.timeout = setTimeout(() => {
        log(`the workflow ran past its timeout of ${seconds} s: stopping it`);
        stop('timed_out');
      }, seconds * 1000);
      this.timeout.unref();
    }
  }

  finish(): void {
    clearInterval(this.timer);
    clearTimeout(this.timeout);
  }
}
