// Maps backend names to factories and picks one for a configuration.
//
// "auto" takes the highest-priority backend whose unsupportedReasons() is empty. An explicit name is
// checked the same way and fails loudly with that backend's reasons: no silent fallback, because a
// user who asked for "flashmla" and got "reference-mla" would measure the wrong thing. Backends
// register themselves when their package is imported; core never imports a backend.

import { backendUnknown, backendUnsupported } from '../errors.js';
import type { AttentionBackend, BackendSelectionContext } from './backend.js';

export type AttentionBackendFactory = () => AttentionBackend;

export class AttentionBackendRegistry {
  readonly #factories = new Map<string, AttentionBackendFactory>();
  readonly #instances = new Map<string, AttentionBackend>();

  /** Registers (or replaces) a backend. Factories run lazily, at most once per name. */
  register(name: string, factory: AttentionBackendFactory): void {
    this.#factories.set(name, factory);
    this.#instances.delete(name);
  }

  has(name: string): boolean {
    return this.#factories.has(name);
  }

  /** Registered names, sorted. */
  names(): string[] {
    return [...this.#factories.keys()].sort();
  }

  /** The backend registered under `name`; throws backendUnknown listing the names otherwise. */
  get(name: string): AttentionBackend {
    const cached = this.#instances.get(name);
    if (cached !== undefined) return cached;
    const factory = this.#factories.get(name);
    if (factory === undefined) throw backendUnknown(name, this.#namesText());
    const backend = factory();
    this.#instances.set(name, backend);
    return backend;
  }

  /** Picks the backend for `choice` ("auto" or a registered name) and this device and model. */
  resolve(choice: string, ctx: BackendSelectionContext): AttentionBackend {
    if (choice !== 'auto') {
      const backend = this.get(choice);
      const reasons = backend.unsupportedReasons(ctx);
      if (reasons.length > 0) throw backendUnsupported(describe([[backend.name, reasons]]));
      return backend;
    }
    const refusals: [string, string[]][] = [];
    let best: AttentionBackend | undefined;
    for (const name of this.names()) {
      const backend = this.get(name);
      const reasons = backend.unsupportedReasons(ctx);
      if (reasons.length > 0) refusals.push([name, reasons]);
      else if (best === undefined || backend.priority > best.priority) best = backend;
    }
    if (best !== undefined) return best;
    if (refusals.length === 0) throw backendUnsupported('  (no attention backend is registered)');
    throw backendUnsupported(describe(refusals));
  }

  #namesText(): string {
    const names = this.names();
    return names.length === 0 ? '(none registered)' : names.join(', ');
  }
}

function describe(refusals: readonly (readonly [string, readonly string[]])[]): string {
  return refusals.map(([name, reasons]) => `  ${name}: ${reasons.join('; ')}`).join('\n');
}

/** The process-wide registry backends add themselves to on import. */
export const attentionBackends = new AttentionBackendRegistry();
