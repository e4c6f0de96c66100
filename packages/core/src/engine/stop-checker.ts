// Stop strings over streamed text. The text matched by a stop string is never emitted, even when it
// arrives split across tokens, so the tail of the text that could still begin a stop string is held
// back until the next token settles it. Because of that hold-back, a stop string that ends in new
// text always starts inside (held-back text + new text), so only that short window is searched:
// the cost per token does not grow with the output.

export interface StopMatch {
  /** Offset in the text where the stop string starts (the text is cut there). */
  readonly at: number;
  readonly stop: string;
}

export class StopStringMatcher {
  readonly #stops: readonly string[];
  /** Proper prefixes of every stop string, longest first (checked against the text's tail). */
  readonly #prefixes: readonly string[];

  constructor(stops: readonly string[]) {
    this.#stops = stops;
    const prefixes = new Set<string>();
    for (const stop of stops) for (let k = 1; k < stop.length; k++) prefixes.add(stop.slice(0, k));
    this.#prefixes = [...prefixes].sort((a, b) => b.length - a.length);
  }

  get isEmpty(): boolean {
    return this.#stops.length === 0;
  }

  /** The earliest stop string in `text` (a short window: held-back text plus the newest delta). */
  find(text: string): StopMatch | undefined {
    let best: StopMatch | undefined;
    for (const stop of this.#stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (best === undefined || at < best.at)) best = { at, stop };
    }
    return best;
  }

  /** How many trailing characters of text are a proper prefix of some stop string. */
  holdback(text: string): number {
    for (const prefix of this.#prefixes) if (text.endsWith(prefix)) return prefix.length;
    return 0;
  }
}
