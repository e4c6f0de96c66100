// GET /v1/models and GET /v1/models/:model: the one served model, with its context length.

import type { FastifyInstance } from 'fastify';
import { resolveModel, type ServerContext } from '../context.js';
import type { ModelCard } from '../openai/types.js';

function card(ctx: ServerContext): ModelCard {
  return {
    id: ctx.modelName,
    object: 'model',
    created: ctx.startedAt,
    owned_by: 'flashserve',
    root: ctx.modelName,
    max_model_len: ctx.maxModelLen,
  };
}

export function registerModels(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/v1/models', async () => ({ object: 'list', data: [card(ctx)] }));
  // A wildcard, because Hub-style names contain a slash ("deepseek-ai/DeepSeek-V3").
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (request) => {
    resolveModel(ctx, request.params['*']);
    return card(ctx);
  });
}
