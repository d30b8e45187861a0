import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one registry instance (its own prom-client Registry, so tests can run several). */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requests: new Counter({
      name: 'swarm_http_requests_total',
      help: 'HTTP requests by method, route and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'swarm_http_request_duration_seconds',
      help: 'HTTP request latency by method and route',
      labelNames: ['method', 'route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
      registers: [registry],
    }),
    uploads: new Counter({
      name: 'swarm_bundle_uploads_total',
      help: 'Bundle uploads by result: created (new version), existing (idempotent retry) or the error code',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    uploadsInProgress: new Gauge({
      name: 'swarm_bundle_uploads_in_progress',
      help: 'Bundle uploads receiving their body now (capped by SWARM_MAX_UPLOADS)',
      registers: [registry],
    }),
    uploadBytes: new Counter({
      name: 'swarm_bundle_upload_bytes_total',
      help: 'Bytes received in bundle uploads',
      registers: [registry],
    }),
    storedBytes: new Counter({
      name: 'swarm_bundle_stored_bytes_total',
      help: 'Bytes of accepted uploads written to the object store (bytes it already held are written again)',
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
