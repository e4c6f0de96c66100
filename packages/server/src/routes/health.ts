// GET /health: 200 with an empty body while the server takes requests, 503 once it is draining (so a
// load balancer stops sending). GET /version: the server's version.

import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';
import { serverDraining } from '../errors.js';

export function registerHealth(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/health', async (_request, reply) => {
    if (ctx.draining) throw serverDraining();
    return reply.code(200).send();
  });
  app.get('/version', async () => ({ version: ctx.version }));
}
