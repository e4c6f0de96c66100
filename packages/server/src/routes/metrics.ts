// GET /metrics: Prometheus text exposition of the app's registry.

import type { FastifyInstance } from 'fastify';
import type { ServerMetrics } from '../plugins/metrics.js';

export function registerMetrics(app: FastifyInstance, metrics: ServerMetrics): void {
  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });
}
