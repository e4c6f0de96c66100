// What every route shares: the engine, the tokenizer (absent under --skip-tokenizer-init), the served
// model's name and limits, and whether the server is draining. Built once by buildApp.

import { randomBytes } from 'node:crypto';
import type { Tokenizer } from '@flashserve/core';
import type { ServingEngine } from './engine-port.js';
import { modelNotFound } from './errors.js';
import type { SamplingDefaults } from './openai/sampling.js';
import type { SchemaLimits } from './openai/schemas.js';

export interface ServerContext {
  readonly engine: ServingEngine;
  readonly tokenizer: Tokenizer | undefined;
  /** The name /v1/models lists and requests must use. */
  readonly modelName: string;
  /** Longest prompt + output, in tokens. */
  readonly maxModelLen: number;
  readonly limits: SchemaLimits;
  /** Defaults for sampling fields a request leaves out (the model's generation config). */
  readonly samplingDefaults: SamplingDefaults;
  /** Unix seconds when the server started (the model card's `created`). */
  readonly startedAt: number;
  readonly version: string;
  /** Set by SIGTERM handling: new generation requests get 503. */
  draining: boolean;
}

/** The served model's name; an absent `model` means it, any other name is a 404. */
export function resolveModel(ctx: ServerContext, requested: string | undefined): string {
  if (requested === undefined || requested === ctx.modelName) return ctx.modelName;
  throw modelNotFound(requested, ctx.modelName);
}

/** Response ids: a prefix and 24 random hex digits, as OpenAI's look. */
export function newResponseId(prefix: 'cmpl' | 'chatcmpl'): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);
