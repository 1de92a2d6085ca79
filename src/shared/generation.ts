// Decoding strategies and completions: shared by the engine, the host and the webview.
import type { HeadAblation } from './interventions';

export type StrategyKind = 'greedy' | 'sample' | 'beam';

export interface Strategy {
  /** Label shown in the UI, e.g. "top-p 0.9, T=0.8". */
  label: string;
  kind: StrategyKind;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  noRepeatNgram?: number;
  beams?: number;
  lengthPenalty?: number;
  earlyStopping?: boolean;
  seed?: number;
  /** Generate with these heads ablated (what-if): the column is the ablated model's. */
  ablation?: HeadAblation;
}

/** The default presets of "Compare Completions…". */
export const DEFAULT_STRATEGIES: Strategy[] = [
  { label: 'greedy', kind: 'greedy' },
  { label: 'beam 4', kind: 'beam', beams: 4, lengthPenalty: 1, earlyStopping: true },
  { label: 'top-k 40', kind: 'sample', topK: 40, seed: 1 },
  { label: 'top-p 0.9, T=0.8', kind: 'sample', topP: 0.9, temperature: 0.8, seed: 1 },
  { label: 'T=1.2', kind: 'sample', temperature: 1.2, seed: 1 },
  { label: 'greedy + repetition penalty 1.3', kind: 'greedy', repetitionPenalty: 1.3 },
];

export interface GenStep {
  id: number;
  text: string;
  /** The model's probability of this token (before any processor): surprisal = −log2 prob. */
  prob: number;
  /** Entropy of the model's distribution at this step, nats. */
  entropy: number;
  /** The model's top alternatives at this step (raw probabilities). */
  top: { id: number; text: string; prob: number }[];
}

export interface CompletionMetrics {
  /** distinct-1..4 */
  distinct: [number, number, number, number];
  /** Fraction of tokens inside a repeated 4-gram. */
  repetitionRate: number;
  /** Mean surprisal of the generated tokens, bits. */
  meanSurprisalBits: number;
  /** First generation step where a loop starts (0-based), or null. */
  loopStart: { step: number; period: number } | null;
}

export type StopReason = 'max_new_tokens' | 'eos' | 'stop_string' | 'cancelled' | 'context_full';

export interface Completion {
  strategy: Strategy;
  /** The prompt the model continued: its end, when the whole did not fit (promptCut). */
  promptIds: number[];
  /**
   * Present when the prompt was longer than the context window leaves room for: its first
   * `total − promptIds.length` tokens were dropped so that the prompt and the new tokens fit in
   * `contextLength` positions; `text` is what is left, decoded (what the model continued).
   */
  promptCut?: { total: number; contextLength: number; text: string };
  steps: GenStep[];
  text: string;
  stopReason: StopReason;
  metrics: CompletionMetrics;
  /** Beam search: the final score (sum of log-probs / length^penalty). */
  score: number | null;
  /** The heads that were ablated while generating (absent: the clean model). */
  ablation?: HeadAblation;
  /**
   * firstStepMs includes running the prompt; promptReused: the prompt's state came from the
   * previous completion of the same prompt (another column), so it was not run again.
   */
  timings: { totalMs: number; firstStepMs: number; perTokenMs: number; promptReused?: boolean };
}

export interface GenerateRequest {
  /** Prompt text (tokenized with the model's tokenizer) or ids. */
  text?: string;
  promptIds?: number[];
  /** Tokens forced after the prompt before decoding continues (decoding-walk forks). */
  forcedIds?: number[];
  strategy: Strategy;
  maxNewTokens: number;
  stopStrings?: string[];
  /** Alternatives recorded per step. */
  topAlternatives?: number;
  /** Generate with these heads ablated (mean ablation: means over the prompt's positions). */
  ablation?: HeadAblation;
}

/**
 * Where the prompt before the cursor begins when nothing is selected: `chars` characters back,
 * then forward to the start of the next line (or, on one long line, the next word), so that
 * the prompt does not begin inside a word — a token the text never had. At the start of the
 * document it begins there. `text` is the document up to the cursor; returns an offset into it.
 */
export function cursorPromptStart(text: string, chars: number): number {
  if (text.length <= chars) return 0;
  let start = text.length - chars;
  const c = text.charCodeAt(start);
  if (c >= 0xdc00 && c <= 0xdfff) start++; // not inside a surrogate pair
  if (text[start - 1] === '\n') return start;
  // the next line, if that leaves at least half of what was asked for
  const atLeast = text.length - Math.floor(chars / 2);
  const nl = text.indexOf('\n', start);
  if (nl >= 0 && nl + 1 <= atLeast) return nl + 1;
  // else the next word (or here, after a space)
  if (/\s/.test(text[start - 1]!)) return start;
  const ws = /\s+/g;
  ws.lastIndex = start;
  const m = ws.exec(text);
  return m && m.index + m[0].length <= atLeast ? m.index + m[0].length : start;
}

/** One edit of a document, as VS Code reports it: offsets into the text before the edit. */
export interface TextEdit {
  rangeOffset: number;
  rangeLength: number;
  textLength: number;
}

/**
 * Where an offset of a document is after `edits` (one change event's; they do not overlap, and
 * each is in the offsets of the text before the event), or null when an edit replaced text
 * around it. Text inserted exactly at the offset goes before it, as at a cursor: the next
 * completion inserted there follows the last one.
 */
export function shiftedOffset(offset: number, edits: readonly TextEdit[]): number | null {
  let out = offset;
  for (const e of edits) {
    const end = e.rangeOffset + e.rangeLength;
    if (end <= offset && !(e.rangeLength > 0 && e.rangeOffset === offset)) out += e.textLength - e.rangeLength;
    else if (e.rangeOffset < offset && end > offset) return null;
  }
  return out;
}
