// One streamed request against an OpenAI-compatible server, timed on the client: when each content
// chunk arrived, and the usage the server reported. Times are milliseconds (performance.now()).

import type { BenchPrompt } from './dataset.js';

export interface RequestTiming {
  readonly ok: boolean;
  readonly error?: string;
  /** Prompt tokens (server usage when reported, else the client's count). */
  readonly promptTokens: number;
  /** Generated tokens (server usage when reported, else content chunks). */
  readonly outputTokens: number;
  /** Send to first content chunk. */
  readonly ttftMs: number;
  /** Gaps between successive content chunks. */
  readonly itlMs: readonly number[];
  /** Send to end of stream. */
  readonly latencyMs: number;
}

export interface RequestTarget {
  readonly url: string;
  readonly chat: boolean;
  readonly model: string;
  readonly apiKey: string | undefined;
  readonly ignoreEos: boolean;
  readonly timeoutMs: number;
}

function body(target: RequestTarget, p: BenchPrompt): unknown {
  const common = {
    model: target.model,
    max_tokens: p.outputLen,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ignore_eos: target.ignoreEos,
  };
  if (!target.chat) return { ...common, prompt: p.prompt };
  const text = typeof p.prompt === 'string' ? p.prompt : p.prompt.join(' ');
  return { ...common, messages: [{ role: 'user', content: text }] };
}

/** Pulls `data:` payloads out of an SSE byte stream. */
async function* sseData(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut = buffer.indexOf('\n\n');
    while (cut >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split('\n')) if (line.startsWith('data:')) yield line.slice(5).trim();
      cut = buffer.indexOf('\n\n');
    }
  }
}

interface Chunk {
  choices?: { text?: string; delta?: { content?: string } }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string };
}

export async function timedRequest(target: RequestTarget, prompt: BenchPrompt): Promise<RequestTiming> {
  const start = performance.now();
  const fail = (error: string): RequestTiming => ({
    ok: false,
    error,
    promptTokens: 0,
    outputTokens: 0,
    ttftMs: 0,
    itlMs: [],
    latencyMs: performance.now() - start,
  });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (target.apiKey) headers['authorization'] = `Bearer ${target.apiKey}`;
  let res: Response;
  try {
    res = await fetch(target.url, {
      method: 'POST',
      headers,
      body: JSON.stringify(body(target, prompt)),
      signal: AbortSignal.timeout(target.timeoutMs),
    });
  } catch (err) {
    return fail((err as Error).message);
  }
  if (!res.ok || !res.body) return fail(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  let first = 0;
  let last = 0;
  let chunks = 0;
  const itl: number[] = [];
  let usage: Chunk['usage'];
  try {
    for await (const data of sseData(res.body)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data) as Chunk;
      if (chunk.error) return fail(chunk.error.message ?? 'error event');
      if (chunk.usage) usage = chunk.usage;
      const text = chunk.choices?.[0]?.text ?? chunk.choices?.[0]?.delta?.content ?? '';
      if (text === '') continue;
      const now = performance.now();
      if (chunks === 0) first = now;
      else itl.push(now - last);
      last = now;
      chunks++;
    }
  } catch (err) {
    return fail((err as Error).message);
  }
  const end = performance.now();
  return {
    ok: true,
    promptTokens: usage?.prompt_tokens ?? prompt.inputLen,
    outputTokens: usage?.completion_tokens ?? chunks,
    ttftMs: chunks === 0 ? end - start : first - start,
    itlMs: itl,
    latencyMs: end - start,
  };
}
