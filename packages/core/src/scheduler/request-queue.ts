// The waiting queue: arrival order at the back, preempted sequences at the front. Array-backed deque
// with a moving head so that both ends are amortised O(1) and nothing is spliced.

export class RequestQueue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  pushBack(item: T): void {
    this.#items.push(item);
  }

  pushFront(item: T): void {
    if (this.#head > 0) this.#items[--this.#head] = item;
    else this.#items.unshift(item);
  }

  peek(): T | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined;
  }

  popFront(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    // Compact once the dead head dominates, so memory stays proportional to the live length.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Drops every item `keep` rejects (O(n); used for finished entries). */
  retain(keep: (item: T) => boolean): void {
    const kept: (T | undefined)[] = [];
    for (let i = this.#head; i < this.#items.length; i++) {
      const it = this.#items[i] as T;
      if (keep(it)) kept.push(it);
    }
    this.#items = kept;
    this.#head = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i] as T;
  }
}
