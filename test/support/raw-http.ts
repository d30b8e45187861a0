/**
 * Raw HTTP/1.1 over a plain TCP socket on loopback, for requests no HTTP client would
 * send (conflicting framing headers, oversized headers). Bounded in time: the socket is
 * destroyed after `timeoutMs`, or once nothing arrived for `idleMs` after the first byte.
 */
import net from 'node:net';

export type RawResult = {
  /** Everything the server sent, as latin1 text. */
  text: string;
  /** The status codes of every HTTP response found in `text`, in order. */
  statuses: number[];
  /** True when the server closed (or reset) the connection before we gave up. */
  closedByServer: boolean;
  error: string | undefined;
};

export function rawRequest(port: number, payload: string | Buffer, opts: { timeoutMs?: number; idleMs?: number } = {}): Promise<RawResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const idleMs = opts.idleMs ?? 700;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const socket = net.connect({ host: '127.0.0.1', port });
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(overall);
      clearTimeout(idle);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ text, statuses, closedByServer, error });
    };
    const overall = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      clearTimeout(idle);
      idle = setTimeout(() => finish(false), idleMs);
    });
    socket.on('error', (err) => {
      error = (err as NodeJS.ErrnoException).code ?? err.message;
    });
    socket.on('close', () => finish(true));
    socket.on('connect', () => socket.write(payload));
  });
}
