/** Runs scripts/s3/swift-s3.py (OpenStack Swift + s3api on loopback) for the tests. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/s3/swift-s3.py');
const READY_TIMEOUT_MS = 60_000;

export type SwiftS3 = {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  /** The proxy's access log: one line per request that reached the store. */
  logFile: string;
  stop(): Promise<void>;
};

export async function startSwiftS3(opts: { dataDir: string; port: number; accessKey: string; secretKey: string }): Promise<SwiftS3> {
  const child = spawn(
    '/usr/bin/python3',
    [script, '--data-dir', opts.dataDir, '--port', String(opts.port), '--access-key', opts.accessKey, '--secret-key', opts.secretKey, '--exit-with-parent'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`Swift S3 server not ready after ${READY_TIMEOUT_MS} ms:\n${stderr}`));
    }, READY_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start Swift (${err.message}); install it with: bash scripts/s3/install.sh`));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Swift S3 server exited (code ${code}) before it was ready; install it with: bash scripts/s3/install.sh\n${stderr}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^READY (\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
  return {
    endpoint,
    accessKey: opts.accessKey,
    secretKey: opts.secretKey,
    logFile: path.join(opts.dataDir, 'log', 'proxy.log'),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
      }),
  };
}
