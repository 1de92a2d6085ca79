// config.json read with every key accounted for. A family's reader marks each key it reads;
// a key no reader read must be in IRRELEVANT_KEYS (it cannot change the numbers of a
// causal-LM forward pass) or the config is refused by the key's name and value. So a key
// that would change the computation is never ignored — whether this engine does not know
// it or a checkpoint uses it in a way transformers does not. A config is untrusted input.
import { EngineError } from '../errors';

export type Json = Record<string, unknown>;

export function bad(why: string): EngineError {
  return new EngineError('BAD_CONFIG', `config.json: ${why}`);
}

export function unsupported(why: string): EngineError {
  return new EngineError('UNSUPPORTED_ARCHITECTURE', `config.json: ${why}`);
}

/** A value for a message: its JSON, cut short. */
export function show(v: unknown): string {
  return (JSON.stringify(v) ?? String(v)).slice(0, 80);
}

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const DROPOUT = 'dropout (off at inference)';
const GENERATION = 'a generation default; every analysis or generation request sets its own';
const OUTPUTS = 'what transformers returns, not what it computes';
const CLASSIFIER = 'classification heads, not the language-model head';
const METADATA = 'metadata';

/** Keys that never change the numbers of a causal-LM forward pass, with the reason. */
export const IRRELEVANT_KEYS: Readonly<Record<string, string>> = {
  architectures: 'class names; model_type selects the implementation',
  transformers_version: METADATA,
  _name_or_path: METADATA,
  name_or_path: METADATA,
  model_name: METADATA,
  _commit_hash: METADATA,
  tokenizer_class: METADATA,
  'transformers.js_config': 'options of transformers.js (which ONNX files and dtypes it loads)',
  auto_map: "custom-code pointers; the engine reproduces transformers' built-in implementation of model_type",
  dtype: "precision of the stored or run weights; the engine reads each tensor's stored dtype and computes in float32",
  torch_dtype: "precision of the stored or run weights; the engine reads each tensor's stored dtype and computes in float32",
  use_cache: 'a generation switch; the engine always keeps its KV cache',
  initializer_range: 'training initialisation',
  pad_token_id: 'padding id; the engine never pads a sequence',
  sep_token_id: 'special-token id for tokenizers; no effect on the forward pass',
  unk_token_id: 'special-token id for tokenizers; no effect on the forward pass',
  decoder_start_token_id: 'encoder-decoder generation only',
  attention_dropout: DROPOUT,
  hidden_dropout: DROPOUT,
  hidden_dropout_prob: DROPOUT,
  attention_probs_dropout_prob: DROPOUT,
  resid_pdrop: DROPOUT,
  embd_pdrop: DROPOUT,
  attn_pdrop: DROPOUT,
  classifier_dropout: DROPOUT,
  summary_first_dropout: DROPOUT,
  output_attentions: OUTPUTS,
  output_hidden_states: OUTPUTS,
  return_dict: OUTPUTS,
  use_return_dict: OUTPUTS,
  torchscript: OUTPUTS,
  output_scores: OUTPUTS,
  return_dict_in_generate: OUTPUTS,
  _attn_implementation: 'attention kernel (eager, sdpa, flash compute the same function)',
  attn_implementation: 'attention kernel (eager, sdpa, flash compute the same function)',
  _attn_implementation_autoset: 'attention kernel (eager, sdpa, flash compute the same function)',
  chunk_size_feed_forward: 'chunked feed-forward computes the same numbers',
  pretraining_tp: 'tensor-parallel degree of pre-training; transformers 5.17 does not read it',
  gradient_checkpointing: 'training only',
  id2label: CLASSIFIER,
  label2id: CLASSIFIER,
  num_labels: CLASSIFIER,
  problem_type: CLASSIFIER,
  finetuning_task: CLASSIFIER,
  summary_type: "GPT-2's sequence-summary head (double-heads model), not the language-model head",
  summary_use_proj: "GPT-2's sequence-summary head (double-heads model), not the language-model head",
  summary_activation: "GPT-2's sequence-summary head (double-heads model), not the language-model head",
  summary_proj_to_labels: "GPT-2's sequence-summary head (double-heads model), not the language-model head",
  prefix: GENERATION,
  task_specific_params: GENERATION,
  max_length: GENERATION,
  min_length: GENERATION,
  do_sample: GENERATION,
  early_stopping: GENERATION,
  num_beams: GENERATION,
  num_beam_groups: GENERATION,
  diversity_penalty: GENERATION,
  temperature: GENERATION,
  top_k: GENERATION,
  top_p: GENERATION,
  typical_p: GENERATION,
  repetition_penalty: GENERATION,
  length_penalty: GENERATION,
  no_repeat_ngram_size: GENERATION,
  encoder_no_repeat_ngram_size: GENERATION,
  bad_words_ids: GENERATION,
  num_return_sequences: GENERATION,
  forced_bos_token_id: GENERATION,
  forced_eos_token_id: GENERATION,
  remove_invalid_values: GENERATION,
  exponential_decay_length_penalty: GENERATION,
  suppress_tokens: GENERATION,
  cache_implementation: 'which KV-cache class transformers generates with (Gemma 2: "hybrid"); the numbers are the same',
  begin_suppress_tokens: GENERATION,
};

/** How a key of a config was accounted for (the key-walk test reads this). */
export type KeyUse = 'used' | 'irrelevant';

/** Each key's use, and for the irrelevant ones why they cannot change the numbers. */
export interface KeyLedger {
  keys: Record<string, KeyUse>;
  reasons: Record<string, string>;
}

/**
 * A config.json with a ledger: each read marks its key as used. `finish()` refuses every key
 * that was neither read nor is irrelevant.
 */
export class ConfigReader {
  private readonly ledger = new Map<string, KeyUse>();
  private readonly reasons = new Map<string, string>();

  constructor(
    readonly cfg: Json,
    readonly modelType: string,
  ) {}

  /** The value of a key (undefined when absent or null), marking it used. */
  get(key: string): unknown {
    this.ledger.set(key, 'used');
    const v = this.cfg[key];
    return v === null ? undefined : v;
  }

  /** Whether a key is present with a non-null value (does not mark it). */
  has(key: string): boolean {
    return this.cfg[key] !== undefined && this.cfg[key] !== null;
  }

  /** A positive integer, the family default when absent; a missing key without default is refused. */
  int(key: string, fallback?: number, max = 1 << 24): number {
    const v = this.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw bad(`missing "${key}"`);
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > max) {
      throw bad(`"${key}" must be a positive integer ≤ ${max}, got ${show(v)}`);
    }
    return v;
  }

  num(key: string, fallback: number, min: number, max: number): number {
    const v = this.get(key);
    if (v === undefined) return fallback;
    return checkNum(key, v, min, max);
  }

  /** A number or null (null and absent are the same: "off"). */
  optNum(key: string, fallback: number | null, min: number, max: number): number | null {
    if (!(key in this.cfg)) {
      this.ledger.set(key, 'used');
      return fallback;
    }
    const v = this.get(key);
    return v === undefined ? null : checkNum(key, v, min, max);
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw bad(`"${key}" must be true or false, got ${show(v)}`);
    return v;
  }

  str(key: string, fallback: string): string {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'string') throw bad(`"${key}" must be a string, got ${show(v)}`);
    return v;
  }

  /**
   * A key this family's transformers implementation does not read: fine at a value that
   * changes nothing (`inert`), refused otherwise — the checkpoint's author meant something
   * transformers would silently ignore.
   */
  inert(key: string, inert: (v: unknown) => boolean, why: string): void {
    const v = this.cfg[key];
    if (v === undefined || v === null || inert(v)) {
      this.ignore(key, `${show(v ?? null)} changes nothing (another value is refused: ${why})`);
      return;
    }
    throw unsupported(`"${key}" = ${show(v)} is not supported for ${this.modelType}: ${why}.`);
  }

  /** A key known not to matter for this family (the reason is kept for the key-walk). */
  ignore(key: string, why: string): void {
    if (key in this.cfg && !this.ledger.has(key)) {
      this.ledger.set(key, 'irrelevant');
      this.reasons.set(key, why);
    }
  }

  /** Refuses the keys nobody read; returns how each key was accounted for. */
  finish(): KeyLedger {
    const keys: Record<string, KeyUse> = {};
    const reasons: Record<string, string> = {};
    for (const [key, v] of Object.entries(this.cfg)) {
      const seen = this.ledger.get(key);
      if (seen) {
        keys[key] = seen;
        if (seen === 'irrelevant') reasons[key] = this.reasons.get(key)!;
      } else if (key in IRRELEVANT_KEYS || v === null) {
        keys[key] = 'irrelevant';
        reasons[key] = IRRELEVANT_KEYS[key] ?? 'null: not set';
      } else
        throw unsupported(
          `"${key.slice(0, 60)}" = ${show(v)} is not a key Transformer Dynamics knows for ${this.modelType}. It may change the ` +
            'computation, so the model is refused rather than run with it ignored (keys known not to matter are listed in ' +
            'src/engine/arch/config.ts).',
        );
    }
    return { keys, reasons };
  }
}

function checkNum(key: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw bad(`"${key}" must be a number in [${min}, ${max}], got ${show(v)}`);
  }
  return v;
}

/** Token ids from a number or a list (bos/eos). */
export function tokenIds(v: unknown): number[] {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
  return [];
}
