// Attention-backend selection for the server.
//
// NOTE: a local adapter. Core's process-wide registry (`attentionBackends` in
// packages/core/src/attention/registry.ts) is not exported from @flashserve/core yet, and
// @flashserve/mla-backend registers nothing yet; until both land, the server resolves among the
// backends it can construct itself, with the same rules: "auto" takes the highest-priority backend
// with no refusal reasons; an explicit name is validated and fails loudly with its reasons.

import {
  type AttentionBackend,
  type BackendSelectionContext,
  backendUnknown,
  backendUnsupported,
  referenceMlaBackend,
} from '@flashserve/core';

const FACTORIES: Readonly<Record<string, () => AttentionBackend>> = {
  'reference-mla': referenceMlaBackend,
};

export function resolveAttentionBackend(choice: string, ctx: BackendSelectionContext): AttentionBackend {
  const names = Object.keys(FACTORIES).sort();
  if (choice !== 'auto') {
    const factory = FACTORIES[choice];
    if (!factory) throw backendUnknown(choice, names.join(', '));
    const backend = factory();
    const reasons = backend.unsupportedReasons(ctx);
    if (reasons.length > 0) throw backendUnsupported(`  ${backend.name}: ${reasons.join('; ')}`);
    return backend;
  }
  const refusals: string[] = [];
  let best: AttentionBackend | undefined;
  for (const name of names) {
    const backend = (FACTORIES[name] as () => AttentionBackend)();
    const reasons = backend.unsupportedReasons(ctx);
    if (reasons.length > 0) refusals.push(`  ${name}: ${reasons.join('; ')}`);
    else if (!best || backend.priority > best.priority) best = backend;
  }
  if (best) return best;
  throw backendUnsupported(refusals.join('\n'));
}
