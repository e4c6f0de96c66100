// POST /v1/completions: OpenAI's legacy completions. A batch `prompt` becomes one engine request per
// prompt; choice i of prompt p is answered as index p * n + i (as OpenAI and vLLM number them).

import type { RequestOutput, SamplingParams, TokenLogprob } from '@flashserve/core';
import type { FastifyInstance } from 'fastify';
import { newResponseId, nowSeconds, resolveModel, type ServerContext } from '../context.js';
import {
  CompletionLogprobsBuilder,
  concatCompletionLogprobs,
  echoedPromptLogprobs,
  promptLogprobsWire,
  type TokenText,
  tokenTextOf,
} from '../openai/logprobs.js';
import { type PreparedPrompt, preparePrompts } from '../openai/prompt.js';
import { completionSamplingParams } from '../openai/sampling.js';
import { completionSchema } from '../openai/schemas.js';
import type { Completion, CompletionChoice, CompletionLogprobs, CompletionRequest } from '../openai/types.js';
import { Generation } from '../serving/generation.js';
import { abortOnDisconnect, respondWithStream } from '../serving/respond.js';
import { choiceUsage, type StreamUsage, streamUsageOf, usageOf } from '../serving/usage.js';

interface Job {
  readonly id: string;
  readonly created: number;
  readonly model: string;
  readonly params: SamplingParams;
  readonly prompts: readonly PreparedPrompt[];
  /** Per prompt: the text echoed before the choice's own (empty without echo). */
  readonly echo: readonly string[];
  /** With echo and logprobs: the alternatives per echoed prompt token (their logprobs lead). */
  readonly echoLogprobs: number | undefined;
  /** vLLM's prompt_logprobs field was asked for. */
  readonly promptLogprobsField: boolean;
  readonly returnTokenIds: boolean;
}

export function registerCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/completions', { schema: { body: completionSchema(ctx.limits) } }, async (request, reply) => {
    const body = request.body as CompletionRequest;
    const model = resolveModel(ctx, body.model);
    const prompts = preparePrompts(body.prompt, ctx.tokenizer);
    const params = completionSamplingParams(
      body,
      prompts.map((p) => p.tokenIds.length),
      ctx,
    );
    const job: Job = {
      id: newResponseId('cmpl'),
      created: nowSeconds(),
      model,
      params,
      prompts,
      echo: prompts.map((p) =>
        body.echo === true
          ? (p.text ?? ctx.tokenizer?.decode(p.tokenIds, { skipSpecialTokens: false }) ?? '')
          : '',
      ),
      echoLogprobs: body.echo === true ? (body.logprobs ?? undefined) : undefined,
      promptLogprobsField: body.prompt_logprobs !== undefined && body.prompt_logprobs !== null,
      returnTokenIds: body.return_token_ids === true || ctx.tokenizer === undefined,
    };
    const generation = Generation.start(
      ctx.engine,
      job.id,
      prompts.map((p) => p.tokenIds),
      params,
    );
    if (body.stream === true) {
      const usage = streamUsageOf(body.stream_options);
      return respondWithStream(reply, generation, (sse) =>
        streamCompletion(ctx, job, generation, usage, sse),
      );
    }
    abortOnDisconnect(reply, generation);
    const { finals, logprobs } = await generation.collect();
    const completion: Completion = {
      id: job.id,
      object: 'text_completion',
      created: job.created,
      model,
      choices: finals.flatMap((final, p) =>
        final.outputs.map((c) => choiceOf(ctx, job, p, c.index, final, logprobs[p]?.get(c.index) ?? [])),
      ),
      usage: usageOf(finals),
    };
    return completion;
  });
}

function choiceOf(
  ctx: ServerContext,
  job: Job,
  promptIndex: number,
  choiceIndex: number,
  final: RequestOutput,
  logprobs: readonly TokenLogprob[],
): CompletionChoice {
  const c = final.outputs[choiceIndex];
  const echo = job.echo[promptIndex] ?? '';
  const tokenText = tokenTextOf(ctx.tokenizer);
  const generated =
    job.params.logprobs === undefined
      ? null
      : new CompletionLogprobsBuilder(tokenText, echo.length).build(logprobs);
  const choice: CompletionChoice = {
    index: promptIndex * job.params.n + choiceIndex,
    text: echo + (c?.text ?? ''),
    logprobs: generated === null ? null : withEchoedPrompt(job, final, generated, tokenText),
    finish_reason: c?.finishReason ?? null,
    stop_reason: c?.stopReason ?? null,
  };
  if (job.returnTokenIds) choice.token_ids = c?.tokenIds ?? [];
  if (job.promptLogprobsField && final.promptLogprobs !== undefined) {
    choice.prompt_logprobs = promptLogprobsWire(final.promptLogprobs, tokenText);
  }
  return choice;
}

/** With echo and logprobs, the echoed prompt's logprobs lead the choice's own (once the engine has
 * computed them: a request aborted before its first token has none). */
function withEchoedPrompt(
  job: Job,
  output: RequestOutput,
  generated: CompletionLogprobs,
  tokenText: TokenText,
): CompletionLogprobs {
  if (job.echoLogprobs === undefined || output.promptLogprobs === undefined) return generated;
  const prompt = echoedPromptLogprobs(
    output.promptTokenIds,
    output.promptLogprobs,
    job.echoLogprobs,
    tokenText,
  );
  return concatCompletionLogprobs(prompt, generated);
}

async function streamCompletion(
  ctx: ServerContext,
  job: Job,
  generation: Generation,
  usage: StreamUsage,
  sse: { send(data: unknown): Promise<void> },
): Promise<void> {
  const n = job.params.n;
  const builders = new Map<number, CompletionLogprobsBuilder>();
  const echoed = new Set<number>();
  const finals: RequestOutput[] = [];
  const tokenText = tokenTextOf(ctx.tokenizer);
  for await (const { promptIndex, output } of generation.stream()) {
    for (const c of output.outputs) {
      const index = promptIndex * n + c.index;
      let text = c.newText;
      const isFirst = !echoed.has(index);
      if (isFirst) {
        echoed.add(index);
        text = (job.echo[promptIndex] ?? '') + text;
      }
      if (text === '' && c.newTokenIds.length === 0 && c.finishReason === null) continue;
      let builder = builders.get(index);
      if (!builder && job.params.logprobs !== undefined) {
        builder = new CompletionLogprobsBuilder(tokenText, (job.echo[promptIndex] ?? '').length);
        builders.set(index, builder);
      }
      const stepLogprobs = builder ? builder.build(c.logprobs ?? []) : null;
      const choice: CompletionChoice = {
        index,
        text,
        logprobs:
          stepLogprobs !== null && isFirst
            ? withEchoedPrompt(job, output, stepLogprobs, tokenText)
            : stepLogprobs,
        finish_reason: c.finishReason,
        stop_reason: c.finishReason === null ? null : (c.stopReason ?? null),
      };
      if (job.returnTokenIds) choice.token_ids = c.newTokenIds;
      const chunk: Completion = {
        id: job.id,
        object: 'text_completion',
        created: job.created,
        model: job.model,
        choices: [choice],
      };
      if (usage.continuous)
        chunk.usage = choiceUsage(output, output.promptTokenIds.length, c.tokenIds.length);
      else if (usage.final) chunk.usage = null;
      await sse.send(chunk);
    }
    if (output.finished) finals.push(output);
  }
  if (usage.final) {
    await sse.send({
      id: job.id,
      object: 'text_completion',
      created: job.created,
      model: job.model,
      choices: [],
      usage: usageOf(finals),
    });
  }
}
