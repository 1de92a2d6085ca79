// Small models suggested in the model picker. Download sizes are the published
// model.safetensors sizes on the Hub (approximate: repositories change; the downloader
// reports the exact size once it has listed the files). `config` holds the config.json
// fields the engine reads, so a memory estimate (memory.ts) can be shown before download.
import { formatBytes } from './messages';

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
    description: 'Strongest of the four; large vocabulary (152k tokens), needs a few GB of RAM.',
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
];

/** "~548 MB": the size shown in the picker. */
export function approximateSize(m: Pick<SuggestedModel, 'downloadBytes'>): string {
  return `~${formatBytes(m.downloadBytes)}`;
}
