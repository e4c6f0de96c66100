// The OpenAI wire types this server speaks, hand-written for the fields it supports. Requests are
// what the JSON schemas in schemas.ts admit (so a handler may trust them); responses are what the
// official client reads. Times are Unix seconds; counts are tokens.

/** Fields shared by /v1/completions and /v1/chat/completions. */
export interface SamplingRequestFields {
  /** Served model name; absent means the one model this server serves. */
  model?: string;
  /** Most tokens to generate per choice. */
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  /** vLLM extension: keep the k most likely tokens (-1 or 0: off). */
  top_k?: number | null;
  /** vLLM extension: drop tokens below min_p times the most likely one's probability. */
  min_p?: number | null;
  n?: number | null;
  stop?: string | string[] | null;
  /** vLLM extension: token ids that end a choice. */
  stop_token_ids?: number[] | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  /** vLLM extension: > 1 discourages repeating prompt or output tokens. */
  repetition_penalty?: number | null;
  /** vLLM extension: keep generating past EOS. */
  ignore_eos?: boolean | null;
  /** vLLM extension: no EOS or stop token before this many tokens. */
  min_tokens?: number | null;
  /** vLLM extension: drop special tokens from the text (default true). */
  skip_special_tokens?: boolean | null;
  /** vLLM extension: return the generated token ids in each choice. */
  return_token_ids?: boolean | null;
  /** vLLM extension: logprobs of the prompt's tokens, with this many alternatives each (not with
   * `stream`). Returned as `prompt_logprobs`. */
  prompt_logprobs?: number | null;
  stream?: boolean | null;
  /** include_usage: a last chunk with the request's usage; continuous_usage_stats (vLLM's, with
   * include_usage): every chunk also carries its choice's usage so far. */
  stream_options?: { include_usage?: boolean | null; continuous_usage_stats?: boolean | null } | null;
  /** Token id (as a decimal string) -> bias in [-100, 100] added to its logit before sampling. */
  logit_bias?: Record<string, number> | null;
  /** Accepted and ignored (end-user id for abuse monitoring). */
  user?: string | null;
}

export type PromptInput = string | string[] | number[] | number[][];

export interface CompletionRequest extends SamplingRequestFields {
  prompt: PromptInput;
  /** Alternatives per token (0: the sampled token only). */
  logprobs?: number | null;
  /** Prepend the prompt to each choice's text. */
  echo?: boolean | null;
}

export interface ChatContentPart {
  type: 'text';
  text: string;
}

export interface ChatMessageParam {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string | ChatContentPart[];
  name?: string;
}

export interface ChatCompletionRequest extends SamplingRequestFields {
  messages: ChatMessageParam[];
  /** Alias of max_tokens that OpenAI prefers; wins when both are given. */
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  /** Alternatives per token; needs logprobs: true. */
  top_logprobs?: number | null;
  /** vLLM extension: end the rendered prompt with the assistant's turn marker (default true). */
  add_generation_prompt?: boolean | null;
}

export interface TokenizeRequest {
  model?: string;
  prompt?: string;
  messages?: ChatMessageParam[];
  add_special_tokens?: boolean;
  add_generation_prompt?: boolean;
}

export interface DetokenizeRequest {
  model?: string;
  tokens: number[];
}

// --- responses ---------------------------------------------------------------------------------

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens served from the prefix cache. */
  prompt_tokens_details?: { cached_tokens: number };
}

export type FinishReasonWire = 'stop' | 'length' | 'abort' | null;

/** Legacy completions logprobs: parallel arrays, one entry per token. */
export interface CompletionLogprobs {
  tokens: string[];
  /** null for an echoed prompt's first token, which has no logprob. */
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[] | null;
  /** Character offset of each token in the choice's text. */
  text_offset: number[];
}

export interface CompletionChoice {
  index: number;
  text: string;
  logprobs: CompletionLogprobs | null;
  finish_reason: FinishReasonWire;
  /** vLLM extension: the stop string or token id that ended the choice. */
  stop_reason?: string | number | null;
  token_ids?: number[];
  /** vLLM extension, with `prompt_logprobs`. */
  prompt_logprobs?: PromptLogprobsWire;
}

/** vLLM's prompt_logprobs: per prompt token (null for the first), token id -> its logprob, rank and
 * text, for the prompt's own token and the top alternatives. */
export type PromptLogprobsWire = (Record<
  string,
  { logprob: number; rank: number; decoded_token: string }
> | null)[];

export interface Completion {
  id: string;
  object: 'text_completion';
  /** Unix seconds. */
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage?: Usage | null;
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  /** UTF-8 bytes of the token. */
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export interface ChatLogprobs {
  content: ChatTokenLogprob[];
}

export interface ChatCompletionChoice {
  index: number;
  message: { role: 'assistant'; content: string };
  logprobs: ChatLogprobs | null;
  finish_reason: FinishReasonWire;
  stop_reason?: string | number | null;
  token_ids?: number[];
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: ChatCompletionChoice[];
  usage: Usage;
  /** vLLM extension, with `prompt_logprobs`. */
  prompt_logprobs?: PromptLogprobsWire;
}

export interface ChatCompletionChunkChoice {
  index: number;
  delta: { role?: 'assistant'; content?: string };
  logprobs: ChatLogprobs | null;
  finish_reason: FinishReasonWire;
  stop_reason?: string | number | null;
  token_ids?: number[];
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: ChatCompletionChunkChoice[];
  usage?: Usage | null;
}

export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  root: string;
  max_model_len: number;
}

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}
