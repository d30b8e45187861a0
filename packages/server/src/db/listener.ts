/**
 * A dedicated PostgreSQL connection LISTENing on a few channels, which says when it is
 * subscribed (`onUp`) and when it lost the connection (`onDown`).
 *
 * Why not postgres.js's `sql.listen`: it reconnects and re-subscribes by itself and calls
 * `onlisten` after every (re)subscription, but it reports nothing when the connection
 * drops (its internal connection's `onclose` is its own). A cache invalidated by these
 * notifications must stop serving the moment notifications may be missed, so this uses
 * the same postgres.js building blocks sql.listen uses (a one-connection instance with
 * the `onnotify` and `onclose` options) and re-subscribes itself.
 */
import postgres from 'postgres';
import type { Logger } from 'pino';

export type ListenHandlers = {
  onNotify(channel: string, payload: string): void;
  /** Subscribed to every channel: notifications from now on arrive. */
  onUp(): void;
  /** The connection closed: notifications may be missed until the next onUp. */
  onDown(): void;
};

export type Listener = { close(): Promise<void> };

const RETRY_MAX_MS = 2000;

export function startListener(url: string, channels: string[], handlers: ListenHandlers, log: Logger): Listener {
  let stopped = false;
  let closes = 0;
  // biome-ignore lint/correctness/noUnusedVariables: read by `??=` in subscribe(): one subscribe loop at a time
  let subscribing: Promise<void> | undefined;
  let retry: NodeJS.Timeout | undefined;
  const options = {
    max: 1,
    idle_timeout: 0,
    // Never recycled on purpose: each reconnect empties the caches.
    max_lifetime: null,
    fetch_types: false,
    connect_timeout: 5,
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 0.5),
    onnotice: () => {},
    connection: { application_name: 'swarm-registry-listener' },
    // Not in postgres.js's types, but it is how its own sql.listen receives notifications.
    onnotify: (channel: string, payload: string) => handlers.onNotify(channel, payload),
    onclose: () => {
      closes++;
      handlers.onDown();
      if (!stopped) {
        log.warn('cache invalidation listener lost its PostgreSQL connection; caches bypassed until it is back');
        subscribe();
      }
    },
  };
  const sql = postgres(url, options as postgres.Options<Record<string, never>>);
  const statement = channels.map((c) => `listen "${c}"`).join('; ');

  function subscribe(): void {
    subscribing ??= (async () => {
      // Runs until subscribed or closed; each attempt is bounded by connect_timeout, and
      // attempts are spaced out (up to RETRY_MAX_MS) while PostgreSQL is unreachable.
      for (let attempt = 0; !stopped; attempt++) {
        const before = closes;
        try {
          await sql.unsafe(statement);
          // A close between the LISTEN and here means the subscription is on a dead connection.
          if (closes === before && !stopped) {
            handlers.onUp();
            if (attempt > 0) log.info('cache invalidation listener subscribed again');
            return;
          }
        } catch (err) {
          if (attempt === 0) log.warn({ err }, 'cache invalidation listener cannot subscribe; retrying');
        }
        await new Promise<void>((resolve) => {
          retry = setTimeout(resolve, Math.min(100 * 2 ** attempt, RETRY_MAX_MS));
        });
      }
    })().finally(() => {
      subscribing = undefined;
    });
  }

  subscribe();
  return {
    close: async () => {
      stopped = true;
      clearTimeout(retry);
      await sql.end({ timeout: 1 });
      handlers.onDown();
    },
  };
}
