/**
 * A loopback TCP proxy that a test can cut, to take a dependency "down" without
 * stopping it. Cut, it stops listening, so connections are refused as they would be
 * by a stopped server, and open connections are dropped.
 */
import net from 'node:net';

export type TcpProxy = {
  port: number;
  url: (base: string) => string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
};

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    });
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    /** `base` with its host and port replaced by the proxy's. */
    url: (base: string) => {
      const u = new URL(base);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString().replace(/\/$/, '');
    },
    cut: stop,
    /** Listens again on the same port. */
    restore: () => listen(port),
    close: stop,
  };
}
