// Attention-backend selection for the server: core's process-wide registry, with every backend
// package imported first so that each has registered itself. Core registers its CPU reference on
// import; @flashserve/mla-backend registers its CUDA backends (which refuse, with reasons, where
// they cannot run). "auto" takes the highest-priority backend with no refusal reasons; an explicit
// name is validated and fails loudly with its reasons.

import { type AttentionBackend, attentionBackends, type BackendSelectionContext } from '@flashserve/core';
import '@flashserve/mla-backend';

export function resolveAttentionBackend(choice: string, ctx: BackendSelectionContext): AttentionBackend {
  return attentionBackends.resolve(choice, ctx);
}
