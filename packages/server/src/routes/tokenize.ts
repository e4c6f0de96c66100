// POST /tokenize and POST /detokenize, vLLM's shapes: a prompt (or chat messages, rendered by the
// template) to token ids, and token ids back to text.

import type { FastifyInstance } from 'fastify';
import { resolveModel, type ServerContext } from '../context.js';
import { requestNoTokenizer } from '../errors.js';
import { toChatMessages } from '../openai/prompt.js';
import { withParam } from '../openai/sampling.js';
import { detokenizeSchema, tokenizeSchema } from '../openai/schemas.js';
import type { DetokenizeRequest, TokenizeRequest } from '../openai/types.js';

export function registerTokenize(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/tokenize', { schema: { body: tokenizeSchema() } }, async (request) => {
    const body = request.body as TokenizeRequest;
    resolveModel(ctx, body.model);
    const tokenizer = ctx.tokenizer;
    if (!tokenizer) throw withParam(requestNoTokenizer('tokenize'), body.messages ? 'messages' : 'prompt');
    let tokens: number[];
    if (body.messages) {
      const text = tokenizer.applyChatTemplate(toChatMessages(body.messages), {
        addGenerationPrompt: body.add_generation_prompt ?? true,
      });
      tokens = tokenizer.encode(text, { addSpecialTokens: body.add_special_tokens ?? false });
    } else {
      tokens = tokenizer.encode(body.prompt ?? '', { addSpecialTokens: body.add_special_tokens ?? true });
    }
    return { count: tokens.length, max_model_len: ctx.maxModelLen, tokens };
  });

  app.post('/detokenize', { schema: { body: detokenizeSchema(ctx.limits) } }, async (request) => {
    const body = request.body as DetokenizeRequest;
    resolveModel(ctx, body.model);
    if (!ctx.tokenizer) throw withParam(requestNoTokenizer('detokenize'), 'tokens');
    return { prompt: ctx.tokenizer.decode(body.tokens, { skipSpecialTokens: false }) };
  });
}
