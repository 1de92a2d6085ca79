// Engine entry for generation: tokenize the prompt, fit it into the context window, and
// decode with the requested strategy, streaming each step.
import { EngineError } from '../errors';
import type { LoadedModel } from '../model';
import type { Completion, GenerateRequest, GenStep } from '../../shared/generation';
import { beamSearch, decodeSingle, KvStepModel, validateStrategy, type StepModel } from './generator';
import { interventionFeeds, type Feeds } from '../interventions/feeds';
import type { AnalyzeContext } from '../analyze';

export async function generate(
  model: LoadedModel,
  req: GenerateRequest,
  onStep?: (step: GenStep, index: number) => void,
  signal?: AbortSignal,
  /**
   * The model seen step by step, or a factory given the request's intervention feeds; default
   * the KV-cache graph with them.
   */
  stepModelOf?: StepModel | ((feeds: Feeds) => StepModel),
  context: AnalyzeContext = {},
): Promise<Completion> {
  validateStrategy(req.strategy);
  if (!Number.isInteger(req.maxNewTokens) || req.maxNewTokens < 1 || req.maxNewTokens > 4096) {
    throw new EngineError('BAD_REQUEST', 'maxNewTokens must be an integer from 1 to 4096.');
  }
  const tk = model.tokenizer;
  // The whole prompt is tokenized, though only its end is kept: tokenizing just a tail is not
  // exact (BPE merges a run of spaces from the run's start, so a run across the cut ends in
  // other tokens: docs/performance.md). A long prompt's ids are remembered for the next column.
  let promptIds = req.promptIds ? [...req.promptIds] : tk.encodeIds(req.text ?? '');
  if (promptIds.length === 0) {
    if (model.spec.bosTokenId === null)
      throw new EngineError('EMPTY_INPUT', 'The prompt is empty and the model has no BOS token to start from.');
    promptIds = [model.spec.bosTokenId];
  }
  for (const id of [...promptIds, ...(req.forcedIds ?? [])]) {
    if (!Number.isInteger(id) || id < 0 || id >= model.spec.dVocab)
      throw new EngineError('BAD_REQUEST', `Token id ${id} is outside the vocabulary.`);
  }
  const ctxLen = model.spec.maxPositions;
  const forced = req.forcedIds ?? [];
  // Every new token asked for, as far as the context window holds them with one prompt token;
  // a prompt too long for the rest loses its start (the model continues from its end), and
  // the completion says so (promptCut).
  const maxNew = Math.min(req.maxNewTokens, ctxLen - 1);
  const total = promptIds.length;
  if (total + maxNew > ctxLen) promptIds = promptIds.slice(total + maxNew - ctxLen);
  if (forced.length >= maxNew) throw new EngineError('BAD_REQUEST', 'The forced prefix leaves no room to generate.');
  // head ablation on every step; mean ablation takes the means over the prompt's positions
  const { feeds, record } = await interventionFeeds(
    model,
    promptIds,
    req.ablation ? { ablation: req.ablation } : undefined,
    context.zMeanOf,
  );
  const stepModel = typeof stepModelOf === 'function' ? stepModelOf(feeds) : (stepModelOf ?? new KvStepModel(model, feeds));
  const t0 = performance.now();
  const opts = {
    strategy: req.strategy,
    promptIds,
    forcedIds: forced,
    maxNewTokens: maxNew,
    eosIds: model.spec.eosTokenIds,
    stopStrings: req.stopStrings ?? [],
    topAlternatives: Math.min(Math.max(1, req.topAlternatives ?? 5), 20),
    weights: model.info.weights,
    decode: (ids: readonly number[]) => tk.decode([...ids]),
    tokenText: (id: number) => tk.tokenText(id),
    onStep,
    signal,
  };
  let result;
  try {
    result = req.strategy.kind === 'beam' ? await beamSearch(stepModel, opts) : await decodeSingle(stepModel, opts);
  } finally {
    stepModel.release?.(); // a KV cache in GPU memory is freed only so
  }
  const totalMs = performance.now() - t0;
  const { firstStepMs, ...rest } = result;
  const n = rest.steps.length;
  return {
    ...rest,
    strategy: req.strategy,
    ...(record?.ablation ? { ablation: record.ablation } : {}),
    ...(promptIds.length < total ? { promptCut: { total, contextLength: ctxLen, text: tk.decode(promptIds) } } : {}),
    stopReason: rest.stopReason === 'max_new_tokens' && maxNew < req.maxNewTokens ? 'context_full' : rest.stopReason,
    timings: {
      totalMs,
      firstStepMs,
      perTokenMs: n > 1 ? (totalMs - firstStepMs) / (n - 1) : 0,
      ...(stepModel instanceof KvStepModel && stepModel.reusedPrompt ? { promptReused: true } : {}),
    },
  };
}
