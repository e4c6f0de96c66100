// Stop strings over streamed text. The text matched by a stop string is never emitted, even when it
// arrives split across tokens, so the tail of the text that could still begin a stop string is held
// back until the next token settles it.

export interface StopMatch {
  /** Offset in the text where the stop string starts (the text is cut there). */
  readonly at: number;
  readonly stop: string;
}

export class StopStringMatcher {
  readonly #stops: readonly string[];
  readonly #maxLen: number;

  constructor(stops: readonly string[]) {
    this.#stops = stops;
    this.#maxLen = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  get isEmpty(): boolean {
    return this.#stops.length === 0;
  }

  /** The earliest stop string that ends inside the text added since prevLength. */
  find(text: string, prevLength: number): StopMatch | undefined {
    if (this.#stops.length === 0 || text.length === prevLength) return undefined;
    const from = Math.max(0, prevLength - this.#maxLen + 1);
    let best: StopMatch | undefined;
    for (const stop of this.#stops) {
      const at = text.indexOf(stop, from);
      if (at >= 0 && (best === undefined || at < best.at)) best = { at, stop };
    }
    return best;
  }

  /** How many trailing characters of text are a proper prefix of some stop string. */
  holdback(text: string): number {
    let hold = 0;
    for (const stop of this.#stops) {
      for (let k = Math.min(stop.length - 1, text.length); k > hold; k--) {
        if (text.endsWith(stop.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return hold;
  }
}
