/** Runs scripts/s3/swift-s3.py (OpenStack Swift + s3api on loopback) for the tests. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Service, startService } from './service.js';

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/s3/swift-s3.py');

export type SwiftS3 = Service & {
  accessKey: string;
  secretKey: string;
  /** The proxy's access log: one line per request that reached the store. */
  logFile: string;
};

export async function startSwiftS3(opts: { dataDir: string; port: number; accessKey: string; secretKey: string }): Promise<SwiftS3> {
  const service = await startService(
    'Swift S3 server',
    '/usr/bin/python3',
    [
      script,
      '--data-dir',
      opts.dataDir,
      '--port',
      String(opts.port),
      '--access-key',
      opts.accessKey,
      '--secret-key',
      opts.secretKey,
      '--exit-with-parent',
    ],
    { installHint: 'install it with: bash scripts/s3/install.sh' },
  );
  return { ...service, accessKey: opts.accessKey, secretKey: opts.secretKey, logFile: path.join(opts.dataDir, 'log', 'proxy.log') };
}
