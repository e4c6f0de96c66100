// POST /v1/chat/completions: messages rendered by the model's chat template, one engine request with n
// choices. Streams start every choice with a role delta, as OpenAI does.

import type { RequestOutput, SamplingParams } from '@flashserve/core';
import type { FastifyInstance } from 'fastify';
import { newResponseId, nowSeconds, resolveModel, type ServerContext } from '../context.js';
import { chatLogprobs, promptLogprobsWire, tokenTextOf } from '../openai/logprobs.js';
import { prepareChat } from '../openai/prompt.js';
import { chatSamplingParams } from '../openai/sampling.js';
import { chatCompletionSchema } from '../openai/schemas.js';
import type { SseWriter } from '../openai/sse.js';
import type {
  ChatCompletion,
  ChatCompletionChoice,
  ChatCompletionChunk,
  ChatCompletionChunkChoice,
  ChatCompletionRequest,
} from '../openai/types.js';
import { Generation } from '../serving/generation.js';
import { abortOnDisconnect, respondWithStream } from '../serving/respond.js';
import { choiceUsage, type StreamUsage, streamUsageOf, usageOf } from '../serving/usage.js';

interface Job {
  readonly id: string;
  readonly created: number;
  readonly model: string;
  readonly params: SamplingParams;
  readonly returnTokenIds: boolean;
}

export function registerChatCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post(
    '/v1/chat/completions',
    { schema: { body: chatCompletionSchema(ctx.limits) } },
    async (request, reply) => {
      const body = request.body as ChatCompletionRequest;
      const model = resolveModel(ctx, body.model);
      const prompt = prepareChat(body.messages, ctx.tokenizer, body.add_generation_prompt ?? true);
      const params = chatSamplingParams(body, prompt.tokenIds.length, ctx);
      const job: Job = {
        id: newResponseId('chatcmpl'),
        created: nowSeconds(),
        model,
        params,
        returnTokenIds: body.return_token_ids === true,
      };
      const generation = Generation.start(ctx.engine, job.id, [prompt.tokenIds], params);
      if (body.stream === true) {
        const usage = streamUsageOf(body.stream_options);
        const promptTokens = prompt.tokenIds.length;
        return respondWithStream(reply, generation, (sse) =>
          streamChat(ctx, job, generation, usage, promptTokens, sse),
        );
      }
      abortOnDisconnect(reply, generation);
      const { finals, logprobs } = await generation.collect();
      const final = finals[0];
      const tokenText = tokenTextOf(ctx.tokenizer);
      const completion: ChatCompletion = {
        id: job.id,
        object: 'chat.completion',
        created: job.created,
        model,
        choices: (final?.outputs ?? []).map((c) => {
          const choice: ChatCompletionChoice = {
            index: c.index,
            message: { role: 'assistant', content: c.text },
            logprobs:
              params.logprobs === undefined
                ? null
                : { content: chatLogprobs(logprobs[0]?.get(c.index) ?? [], tokenText) },
            finish_reason: c.finishReason,
            stop_reason: c.stopReason ?? null,
          };
          if (job.returnTokenIds) choice.token_ids = c.tokenIds;
          return choice;
        }),
        usage: usageOf(finals),
      };
      if (final?.promptLogprobs !== undefined) {
        completion.prompt_logprobs = promptLogprobsWire(final.promptLogprobs, tokenText);
      }
      return completion;
    },
  );
}

async function streamChat(
  ctx: ServerContext,
  job: Job,
  generation: Generation,
  usage: StreamUsage,
  promptTokens: number,
  sse: SseWriter,
): Promise<void> {
  // `output` and `generated`: the request's latest output and the choice's tokens so far, for
  // continuous usage.
  const chunk = (
    choices: ChatCompletionChunkChoice[],
    output?: RequestOutput,
    generated = 0,
  ): ChatCompletionChunk => {
    const c: ChatCompletionChunk = {
      id: job.id,
      object: 'chat.completion.chunk',
      created: job.created,
      model: job.model,
      choices,
    };
    if (usage.continuous) c.usage = choiceUsage(output, promptTokens, generated);
    else if (usage.final) c.usage = null;
    return c;
  };
  for (let i = 0; i < job.params.n; i++) {
    await sse.send(
      chunk([{ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]),
    );
  }
  const tokenText = tokenTextOf(ctx.tokenizer);
  let last: Parameters<typeof usageOf>[0][number] | undefined;
  for await (const { output } of generation.stream()) {
    for (const c of output.outputs) {
      if (c.newText === '' && c.newTokenIds.length === 0 && c.finishReason === null) continue;
      const choice: ChatCompletionChunkChoice = {
        index: c.index,
        delta: c.newText === '' && c.finishReason !== null ? {} : { content: c.newText },
        logprobs:
          job.params.logprobs === undefined ? null : { content: chatLogprobs(c.logprobs ?? [], tokenText) },
        finish_reason: c.finishReason,
        stop_reason: c.finishReason === null ? null : (c.stopReason ?? null),
      };
      if (job.returnTokenIds) choice.token_ids = c.newTokenIds;
      await sse.send(chunk([choice], output, c.tokenIds.length));
    }
    if (output.finished) last = output;
  }
  if (usage.final && last) {
    const usageChunk: ChatCompletionChunk = { ...chunk([]), usage: usageOf([last]) };
    await sse.send(usageChunk);
  }
}
