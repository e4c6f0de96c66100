// Server-sent events as OpenAI streams them: each event is one `data: <json>` line and a blank line;
// the stream ends with `data: [DONE]`. An error after the headers went out can no longer change the
// status, so it travels as an event `data: {"error": {...}}` (the official client throws it as an
// APIError), followed by [DONE].
//
// NOTE: the writer owns the raw socket once started (the route has hijacked the reply). It honours
// backpressure so a slow reader holds the request's generator back instead of buffering without end,
// and it reports a closed connection through `closed` so the caller can abort the engine request.

import type { ServerResponse } from 'node:http';

export class SseWriter {
  readonly #res: ServerResponse;
  #closed = false;
  #onClose: (() => void)[] = [];

  constructor(res: ServerResponse) {
    this.#res = res;
    res.on('close', () => {
      // 'close' after end() is the normal finish; before it, the client went away.
      const early = !res.writableFinished;
      this.#closed = true;
      if (early) for (const fn of this.#onClose.splice(0)) fn();
    });
  }

  /** True once the connection is gone (or the stream ended). */
  get closed(): boolean {
    return this.#closed || this.#res.destroyed;
  }

  /** Calls `fn` once if the client disconnects before the stream ends. */
  onDisconnect(fn: () => void): void {
    if (this.closed && !this.#res.writableFinished) fn();
    else this.#onClose.push(fn);
  }

  start(extraHeaders: Record<string, string> = {}): void {
    this.#res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...extraHeaders,
    });
    // Sends the headers now: the client sees 200 before the first token (TTFT is measured from here).
    this.#res.flushHeaders();
  }

  /** Writes one event; resolves when the socket can take more. */
  async send(data: unknown): Promise<void> {
    await this.#write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** Writes the terminating [DONE] event and ends the response. */
  async done(): Promise<void> {
    if (this.closed) return;
    await this.#write('data: [DONE]\n\n');
    this.#res.end();
  }

  async #write(chunk: string): Promise<void> {
    if (this.closed) return;
    if (this.#res.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const finish = () => {
        this.#res.off('drain', finish);
        this.#res.off('close', finish);
        resolve();
      };
      this.#res.on('drain', finish);
      this.#res.on('close', finish);
    });
  }
}
