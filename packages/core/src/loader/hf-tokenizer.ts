// The Hugging Face tokenizer of a model directory: tokenizer.json through @huggingface/tokenizers,
// the chat template (tokenizer_config.json "chat_template", or chat_template.jinja as transformers 5
// writes it) through @huggingface/jinja.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as JsTokenizer } from '@huggingface/tokenizers';
import type { ChatMessage, Tokenizer } from '../engine/tokenizer.js';
import { chatTemplateMissing, loadFileMalformed } from '../errors.js';
import { byteLevelTokenBytes } from './byte-level.js';
import { type JsonObject, readJsonObject } from './json-file.js';

export interface HfTokenizerOptions {
  /** Extra ids that end generation (generation_config.json's eos_token_id); merged with the tokenizer's. */
  readonly extraEosTokenIds?: readonly number[];
}

/** A special-token field may be a string or an AddedToken object {content, ...}. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { content?: unknown }).content === 'string'
  ) {
    return (value as { content: string }).content;
  }
  return undefined;
}

function chatTemplateOf(config: JsonObject, dir: string, configPath: string): string | undefined {
  const jinjaPath = join(dir, 'chat_template.jinja');
  if (existsSync(jinjaPath)) return readFileSync(jinjaPath, 'utf8');
  const t = config['chat_template'];
  if (t === undefined || t === null) return undefined;
  if (typeof t === 'string') return t;
  // A list of named templates: take "default".
  if (Array.isArray(t)) {
    const named = t.find(
      (x): x is { name: string; template: string } =>
        typeof x === 'object' && x !== null && x.name === 'default' && typeof x.template === 'string',
    );
    if (named !== undefined) return named.template;
  }
  throw loadFileMalformed(configPath, '"chat_template" must be a string or a list with a "default" entry');
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly eosTokenIds: readonly number[];
  readonly specialTokenIds: ReadonlySet<number>;
  readonly #tok: JsTokenizer;
  readonly #specialTokens: Record<string, string>;
  readonly #template: Template | undefined;
  readonly #dir: string;
  readonly #addedTokenIds = new Set<number>();
  /** Ids added around an encoding with special tokens that tokenizer.json's post-processor leaves out. */
  readonly #prefixIds: number[] = [];
  readonly #suffixIds: number[] = [];
  /** Present only when decoding is plain concatenation of per-token bytes (see the contract). */
  readonly tokenBytes?: (id: number) => Uint8Array | undefined;
  readonly #tokenBytesCache = new Map<number, Uint8Array | undefined>();

  constructor(
    tokenizerJson: JsonObject,
    tokenizerConfig: JsonObject,
    chatTemplate: string | undefined,
    dir: string,
    options: HfTokenizerOptions = {},
  ) {
    this.#dir = dir;
    try {
      this.#tok = new JsTokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw loadFileMalformed(join(dir, 'tokenizer.json'), e instanceof Error ? e.message : String(e));
    }
    const vocab = this.#tok.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;

    const special = new Set<number>();
    for (const [id, tok] of this.#tok.get_added_tokens_decoder()) {
      this.#addedTokenIds.add(id);
      if (tok.special) special.add(id);
    }
    this.specialTokenIds = special;

    this.#specialTokens = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
      const text = tokenText(tokenizerConfig[key]);
      if (text !== undefined) this.#specialTokens[key] = text;
    }
    const eos = new Set<number>(options.extraEosTokenIds ?? []);
    const eosText = this.#specialTokens['eos_token'];
    if (eosText !== undefined) {
      const id = this.#tok.token_to_id(eosText);
      if (id !== undefined) eos.add(id);
    }
    this.eosTokenIds = [...eos];
    // NOTE: transformers' Llama-family fast tokenizers (DeepSeek-V2/V3's tokenizer_class) rebuild the
    // post-processor from add_bos_token / add_eos_token when loaded, so a tokenizer.json whose own
    // post-processor is plain ByteLevel still gets BOS. Do the same, unless the file already adds it.
    const probe = this.#tok.encode('a', { add_special_tokens: true }).ids;
    const bosId = this.#idOf('bos_token');
    const eosId = this.#idOf('eos_token');
    if (tokenizerConfig['add_bos_token'] === true && bosId !== undefined && probe[0] !== bosId) {
      this.#prefixIds.push(bosId);
    }
    if (tokenizerConfig['add_eos_token'] === true && eosId !== undefined && probe.at(-1) !== eosId) {
      this.#suffixIds.push(eosId);
    }
    // NOTE: per-token bytes are only exact when the decoder is ByteLevel alone and no clean-up rewrites
    // spaces; otherwise the detokenizer must go through decode().
    const decoder = tokenizerJson['decoder'] as { type?: unknown } | null | undefined;
    const byteLevelOnly =
      decoder?.type === 'ByteLevel' && tokenizerConfig['clean_up_tokenization_spaces'] !== true;
    if (byteLevelOnly) this.tokenBytes = (id) => this.#byteLevelBytes(id);
    try {
      this.#template = chatTemplate === undefined ? undefined : new Template(chatTemplate);
    } catch (e) {
      throw loadFileMalformed(
        join(dir, 'tokenizer_config.json'),
        `chat template does not parse: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
  }

  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] {
    const addSpecialTokens = options?.addSpecialTokens ?? true;
    const ids = this.#tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    if (!addSpecialTokens || (this.#prefixIds.length === 0 && this.#suffixIds.length === 0)) return ids;
    return [...this.#prefixIds, ...ids, ...this.#suffixIds];
  }

  #byteLevelBytes(id: number): Uint8Array | undefined {
    const cache = this.#tokenBytesCache;
    if (cache.has(id)) return cache.get(id);
    // Added tokens (special or not) are stored as plain text, not byte-level spelling.
    const token = this.#addedTokenIds.has(id) ? undefined : this.#tok.id_to_token(id);
    const bytes = token === undefined ? undefined : byteLevelTokenBytes(token);
    cache.set(id, bytes);
    return bytes;
  }

  #idOf(key: string): number | undefined {
    const text = this.#specialTokens[key];
    return text === undefined ? undefined : this.#tok.token_to_id(text);
  }

  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string {
    // The byte-level decoder turns an incomplete UTF-8 sequence into U+FFFD, which the incremental
    // detokenizer relies on.
    return this.#tok.decode([...ids], { skip_special_tokens: options?.skipSpecialTokens ?? false });
  }

  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string {
    if (this.#template === undefined) throw chatTemplateMissing(this.#dir);
    return this.#template.render({
      ...this.#specialTokens,
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: options?.addGenerationPrompt ?? false,
    });
  }

  get hasChatTemplate(): boolean {
    return this.#template !== undefined;
  }
}

/** Loads tokenizer.json, tokenizer_config.json (optional) and the chat template from `dir`. */
export function loadHfTokenizer(dir: string, options: HfTokenizerOptions = {}): HfTokenizer {
  const tokenizerJson = readJsonObject(join(dir, 'tokenizer.json'), 'it defines the tokenizer');
  const configPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? readJsonObject(configPath, 'tokenizer settings') : {};
  return new HfTokenizer(tokenizerJson, config, chatTemplateOf(config, dir, configPath), dir, options);
}
