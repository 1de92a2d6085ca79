// Loading a model: checkpoint folder → spec → tokenizer → instrumented graphs → sessions.
import * as path from 'node:path';
import { openCheckpoint } from './checkpoint/hf';
import { paramCount, specFromConfig, type ModelSpec } from './arch/spec';
import { weightReader } from './arch/weights';
import { buildForwardGraph } from './graph/forward';
import { buildLensGraph } from './graph/lens';
import { createSession, type RuntimeOptions, type Session } from './runtime/ort';
import { TextTokenizer } from './tokenizer';
import { EngineError } from './errors';
import type { ModelInfo } from '../shared/analysis';
import { findOnnxExport, loadOnnxExport } from './onnx/export-model';

export interface LoadedModel {
  dir: string;
  info: ModelInfo;
  spec: ModelSpec;
  tokenizer: TextTokenizer;
  forward: Session;
  lens: Session;
  /** ln_final weights (and bias), kept for measures computed in JS. */
  lnFinal: { w: Float32Array; b: Float32Array | null };
  /** ‖W_U[:, t]‖ and ‖W_E[t]‖ for every token t [d_vocab]. */
  unembedNorms: Float32Array;
  embedNorms: Float32Array;
  loadMs: number;
  release(): Promise<void>;
}

export interface LoadOptions extends RuntimeOptions {
  /** Display name; defaults to the folder name. */
  name?: string;
  /** Output attention patterns from the forward graph. */
  patterns?: boolean;
}

export function modelInfo(name: string, spec: ModelSpec): ModelInfo {
  return {
    name,
    architecture: spec.modelType,
    family: spec.family,
    n_layers: spec.nLayers,
    d_model: spec.dModel,
    d_vocab: spec.dVocab,
    n_heads: spec.nHeads,
    n_kv_heads: spec.nKvHeads,
    d_head: spec.headDim,
    max_positions: spec.maxPositions,
    params: paramCount(spec),
    tied_embeddings: spec.tiedEmbeddings,
  };
}

export async function loadModel(dir: string, opts: LoadOptions): Promise<LoadedModel> {
  // An existing ONNX export (onnx/model.onnx, no safetensors): graph surgery instead of building.
  if (findOnnxExport(dir)) return loadOnnxExport(dir, opts);
  const t0 = performance.now();
  const ckpt = openCheckpoint(dir);
  const spec = specFromConfig(ckpt.config);
  const tokenizer = new TextTokenizer(ckpt.tokenizerJson, ckpt.tokenizerConfig);
  if (tokenizer.vocabSize > spec.dVocab) {
    throw new EngineError(
      'BAD_TOKENIZER',
      `tokenizer.json has ${tokenizer.vocabSize} tokens but the model's vocabulary has ${spec.dVocab}: they belong to different models.`,
    );
  }
  const reader = weightReader(spec, ckpt.weights);
  const forwardBytes = buildForwardGraph(spec, reader, { patterns: opts.patterns ?? true }).encode();
  const globals = reader.globals();
  const lensBytes = buildLensGraph(spec, globals).encode();
  const rowNorms = (m: Float32Array) => {
    const out = new Float32Array(spec.dVocab);
    for (let t = 0; t < spec.dVocab; t++) {
      let s = 0;
      for (let i = 0; i < spec.dModel; i++) s += m[t * spec.dModel + i]! ** 2;
      out[t] = Math.sqrt(s);
    }
    return out;
  };
  const unembedNorms = rowNorms(globals.unembed);
  const embedNorms = globals.unembed === globals.embed ? unembedNorms : rowNorms(globals.embed);
  const forward = await createSession(forwardBytes, opts);
  let lens: Session;
  try {
    lens = await createSession(lensBytes, opts);
  } catch (e) {
    await forward.release();
    throw e;
  }
  if (spec.bosTokenId === null && tokenizer.bosId !== null) spec.bosTokenId = tokenizer.bosId;
  if (spec.eosTokenIds.length === 0) spec.eosTokenIds = tokenizer.eosIds;
  return {
    dir,
    info: modelInfo(opts.name ?? path.basename(path.resolve(dir)), spec),
    spec,
    tokenizer,
    forward,
    lens,
    lnFinal: { w: globals.lnFinal.w, b: globals.lnFinal.b },
    unembedNorms,
    embedNorms,
    loadMs: performance.now() - t0,
    async release() {
      await forward.release();
      await lens.release();
    },
  };
}
