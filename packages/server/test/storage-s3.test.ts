/** The s3 driver against the driver suite, on the test S3 server (global setup), in a bucket of its own. */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import '../../../test/support/provided.js';
import { S3Driver } from '../src/storage/s3.js';
import { driverSuite } from './support/driver-suite.js';

driverSuite('s3', async () => {
  const { endpoint, accessKey, secretKey, region } = inject('s3');
  const bucket = `swarm-test-${randomBytes(6).toString('hex')}`;
  return new S3Driver({ endpoint, publicEndpoint: endpoint, accessKey, secretKey, region, bucket });
});
