/**
 * The fs driver against the driver suite, in a fresh directory. Its signed URLs are
 * served by the registry's own /store route, mounted alone on a bare Fastify.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { afterAll } from 'vitest';
import { blobRoutes } from '../src/http/blobs.js';
import { sendError } from '../src/http/errors.js';
import { FsDriver } from '../src/storage/fs.js';
import { driverSuite } from './support/driver-suite.js';

const app = Fastify();
const root = path.join(os.tmpdir(), `swarm-fs-driver-${randomBytes(6).toString('hex')}`);
afterAll(async () => {
  await app.close();
  await fs.rm(root, { recursive: true, force: true });
});

driverSuite('fs', async () => {
  let storeUrl = '';
  const driver = new FsDriver({ root, publicUrl: () => storeUrl, signingKey: randomBytes(32).toString('hex') });
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  await app.register(blobRoutes, { driver });
  storeUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  return driver;
});
