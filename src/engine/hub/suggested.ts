// Small models suggested in the model picker. Download sizes are the published
// model.safetensors sizes on the Hub (approximate: repositories change; the downloader
// reports the exact size once it has listed the files). `config` holds the config.json
// fields the engine reads, so a memory estimate (memory.ts) can be shown before download
// (test/fixtures/hub-configs holds the full published configs of today's models; the tests
// check both give the same estimate).
import { formatBytes } from './messages';
import { specFromConfig } from '../arch/spec';
import { estimateMemory, gb } from '../memory';

export interface SuggestedModel {
  repo: string;
  label: string;
  description: string;
  /** Parameter count, for display ("124M"). */
  params: string;
  /** Approximate bytes of the files downloaded (weights dominate). */
  downloadBytes: number;
  /** Always true: sizes are as published and may drift. */
  approximate: true;
  /** dtype of the published weights (the engine computes in float32 regardless). */
  dtype: 'F32' | 'F16' | 'BF16';
  license: string;
  /** Architecture fields of config.json (enough for specFromConfig). */
  config: Record<string, unknown>;
  /** Accepting the licence on the model page (and a token) is needed to download it. */
  gated?: true;
}

export const SUGGESTED_MODELS: readonly SuggestedModel[] = [
  {
    repo: 'openai-community/gpt2',
    label: 'GPT-2 (124M)',
    description: 'The classic small GPT-2; most interpretability results are reported on it.',
    params: '124M',
    downloadBytes: 548e6,
    approximate: true,
    dtype: 'F32',
    license: 'mit',
    config: {
      model_type: 'gpt2',
      n_layer: 12,
      n_embd: 768,
      n_head: 12,
      n_positions: 1024,
      n_ctx: 1024,
      vocab_size: 50257,
      activation_function: 'gelu_new',
      layer_norm_epsilon: 1e-5,
      bos_token_id: 50256,
      eos_token_id: 50256,
    },
  },
  {
    repo: 'EleutherAI/pythia-70m',
    label: 'Pythia 70M',
    description: 'Tiny GPT-NeoX model trained on the Pile; fast on any machine.',
    params: '70M',
    downloadBytes: 166e6,
    approximate: true,
    dtype: 'F16',
    license: 'apache-2.0',
    config: {
      model_type: 'gpt_neox',
      hidden_size: 512,
      num_hidden_layers: 6,
      num_attention_heads: 8,
      intermediate_size: 2048,
      max_position_embeddings: 2048,
      vocab_size: 50304,
      rotary_pct: 0.25,
      rotary_emb_base: 10000,
      use_parallel_residual: true,
      hidden_act: 'gelu',
      layer_norm_eps: 1e-5,
      tie_word_embeddings: false,
      bos_token_id: 0,
      eos_token_id: 0,
    },
  },
  {
    repo: 'HuggingFaceTB/SmolLM2-135M',
    label: 'SmolLM2 135M',
    description: 'Modern small Llama-architecture model (grouped-query attention, 30 layers).',
    params: '135M',
    downloadBytes: 269e6,
    approximate: true,
    dtype: 'BF16',
    license: 'apache-2.0',
    config: {
      model_type: 'llama',
      hidden_size: 576,
      num_hidden_layers: 30,
      num_attention_heads: 9,
      num_key_value_heads: 3,
      intermediate_size: 1536,
      max_position_embeddings: 8192,
      vocab_size: 49152,
      rope_theta: 100000,
      rms_norm_eps: 1e-5,
      hidden_act: 'silu',
      tie_word_embeddings: true,
      bos_token_id: 0,
      eos_token_id: 0,
    },
  },
  {
    repo: 'Qwen/Qwen2.5-0.5B',
    label: 'Qwen2.5 0.5B',
    description: 'Qwen2.5: q/k/v biases, large vocabulary (152k tokens); needs a few GB of RAM.',
    params: '494M',
    downloadBytes: 988e6,
    approximate: true,
    dtype: 'BF16',
    license: 'apache-2.0',
    config: {
      model_type: 'qwen2',
      hidden_size: 896,
      num_hidden_layers: 24,
      num_attention_heads: 14,
      num_key_value_heads: 2,
      intermediate_size: 4864,
      max_position_embeddings: 32768,
      vocab_size: 151936,
      rope_theta: 1000000,
      rms_norm_eps: 1e-6,
      hidden_act: 'silu',
      tie_word_embeddings: true,
      use_sliding_window: false,
      sliding_window: 32768,
      bos_token_id: 151643,
      eos_token_id: 151643,
    },
  },
  {
    repo: 'Qwen/Qwen3-0.6B',
    label: 'Qwen3 0.6B',
    description: 'Qwen3: per-head q/k norms, 28 layers, large vocabulary (152k tokens).',
    params: '0.6B',
    downloadBytes: 1.5e9,
    approximate: true,
    dtype: 'BF16',
    license: 'apache-2.0',
    config: {
      model_type: 'qwen3',
      hidden_size: 1024,
      num_hidden_layers: 28,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      head_dim: 128,
      intermediate_size: 3072,
      max_position_embeddings: 40960,
      vocab_size: 151936,
      rope_theta: 1000000,
      rms_norm_eps: 1e-6,
      tie_word_embeddings: true,
      use_sliding_window: false,
      bos_token_id: 151643,
      eos_token_id: 151645,
    },
  },
  {
    repo: 'google/gemma-3-270m',
    label: 'Gemma 3 270M',
    description: 'Gemma 3: sliding-window layers with a full one every sixth, norms around every sublayer (gated: accept the licence).',
    params: '268M',
    downloadBytes: 536e6,
    approximate: true,
    dtype: 'BF16',
    license: 'gemma',
    gated: true,
    config: {
      model_type: 'gemma3_text',
      hidden_size: 640,
      num_hidden_layers: 18,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      head_dim: 256,
      intermediate_size: 2048,
      max_position_embeddings: 32768,
      vocab_size: 262144,
      sliding_window: 512,
      rope_theta: 1000000,
      rope_local_base_freq: 10000,
      rms_norm_eps: 1e-6,
      bos_token_id: 2,
      eos_token_id: 1,
    },
  },
  {
    repo: 'meta-llama/Llama-3.2-1B',
    label: 'Llama 3.2 1B',
    description: 'Llama 3.2 with llama3 RoPE scaling and a 128k vocabulary (gated: accept the licence).',
    params: '1.24B',
    downloadBytes: 2.47e9,
    approximate: true,
    dtype: 'BF16',
    license: 'llama3.2',
    gated: true,
    config: {
      model_type: 'llama',
      hidden_size: 2048,
      num_hidden_layers: 16,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      head_dim: 64,
      intermediate_size: 8192,
      max_position_embeddings: 131072,
      vocab_size: 128256,
      rope_theta: 500000,
      rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      rms_norm_eps: 1e-5,
      tie_word_embeddings: true,
      bos_token_id: 128000,
      eos_token_id: 128001,
    },
  },
  {
    repo: 'allenai/OLMo-2-0425-1B',
    label: 'OLMo 2 1B',
    description: 'Fully open OLMo 2: norms after attention and MLP, q/k norms; float32 weights.',
    params: '1.48B',
    downloadBytes: 5.94e9,
    approximate: true,
    dtype: 'F32',
    license: 'apache-2.0',
    config: {
      model_type: 'olmo2',
      hidden_size: 2048,
      num_hidden_layers: 16,
      num_attention_heads: 16,
      num_key_value_heads: 16,
      intermediate_size: 8192,
      max_position_embeddings: 4096,
      vocab_size: 100352,
      rope_theta: 500000,
      rms_norm_eps: 1e-6,
      tie_word_embeddings: false,
      eos_token_id: 100257,
    },
  },
  {
    repo: 'HuggingFaceTB/SmolLM3-3B',
    label: 'SmolLM3 3B',
    description: 'SmolLM3: every fourth layer without RoPE; needs a machine with plenty of RAM.',
    params: '3.08B',
    downloadBytes: 6.16e9,
    approximate: true,
    dtype: 'BF16',
    license: 'apache-2.0',
    config: {
      model_type: 'smollm3',
      hidden_size: 2048,
      num_hidden_layers: 36,
      num_attention_heads: 16,
      num_key_value_heads: 4,
      intermediate_size: 11008,
      max_position_embeddings: 65536,
      vocab_size: 128256,
      rope_theta: 5000000,
      no_rope_layer_interval: 4,
      rms_norm_eps: 1e-6,
      eos_token_id: 128012,
    },
  },
  {
    repo: 'microsoft/Phi-4-mini-instruct',
    label: 'Phi-4-mini',
    description: 'Phi-4-mini: fused projections, partial rotary, LongRoPE; 200k vocabulary, needs plenty of RAM.',
    params: '3.84B',
    downloadBytes: 7.67e9,
    approximate: true,
    dtype: 'BF16',
    license: 'mit',
    config: {
      model_type: 'phi3',
      hidden_size: 3072,
      num_hidden_layers: 32,
      num_attention_heads: 24,
      num_key_value_heads: 8,
      intermediate_size: 8192,
      max_position_embeddings: 131072,
      original_max_position_embeddings: 4096,
      vocab_size: 200064,
      partial_rotary_factor: 0.75,
      rope_theta: 10000,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: true,
      bos_token_id: 199999,
      eos_token_id: 199999,
    },
  },
];

/** "~548 MB": the size shown in the picker. */
export function approximateSize(m: Pick<SuggestedModel, 'downloadBytes'>): string {
  return `~${formatBytes(m.downloadBytes)}`;
}

/** The analysis settings a memory estimate depends on. */
export interface EstimateSettings {
  tokens: number;
  patterns: boolean;
  graphCache: boolean;
}

/**
 * What the picker says about a suggestion: the download size and the memory an analysis of
 * `tokens` tokens (capped at its context) would take, from its config — the estimate the
 * download itself is checked against (memory.ts).
 */
export function suggestionSummary(m: SuggestedModel, settings: EstimateSettings): string {
  const spec = specFromConfig(m.config);
  const e = estimateMemory(spec, m.downloadBytes, Math.min(settings.tokens, spec.maxPositions), settings);
  return `${approximateSize(m)} download · about ${gb(e.peak)} of memory for ${e.tokens} tokens${m.gated ? ' · gated' : ''}`;
}
