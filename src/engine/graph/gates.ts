// Row gates: graph inputs that say how many rows of an expensive or large output a run
// computes. onnxruntime executes every node of a graph on every run and keeps every graph
// output until the run ends, fetched or not; a gate fed 0 makes such an output empty.
//   pattern_rows [1] int64  query rows of each layer's attention pattern output (default 0):
//                           unfetched patterns held n_layers·n_heads·T² floats in the arena
//                           (151 MB at 512 tokens of GPT-2-small)
//   logit_rows   [1] int64  sequences of the batch that get final logits (default all): an
//                           analysis takes them from the lens, so the forward session never
//                           reads W_U, and the unembedding's pages are resident once, in the
//                           lens session, not in both (154 MB for GPT-2-small)
//   kv_rows      [1] int64  positions of each layer's new_key_values output (default 0): only
//                           generation reads them (graph/forward.ts, stepCache); unfetched
//                           they would keep a second copy of an analysis's keys and values
// LoadedModel.forward feeds the defaults to callers that do not know the gates.
import type { GraphBuilder } from '../onnx/builder';
import type { NamedTensor, Session } from '../runtime/ort';

export const PATTERN_ROWS = 'pattern_rows';
export const LOGIT_ROWS = 'logit_rows';
export const KV_ROWS = 'kv_rows';

/** A gate's "every row" (Slice clamps it to the axis). */
export const ALL_ROWS: NamedTensor = { data: BigInt64Array.of(BigInt(2 ** 62)), dims: [1] };

const DEFAULTS: Record<string, NamedTensor> = {
  [PATTERN_ROWS]: { data: BigInt64Array.of(0n), dims: [1] },
  [LOGIT_ROWS]: ALL_ROWS,
  [KV_ROWS]: { data: BigInt64Array.of(0n), dims: [1] },
};

type Gate = typeof PATTERN_ROWS | typeof LOGIT_ROWS | typeof KV_ROWS;

const declared = new WeakMap<GraphBuilder, Set<string>>();

/** The gate's input, declared once per graph (on the root graph: a branch reads it there). */
export function gateInput(g: GraphBuilder, gate: Gate): string {
  const root = g.root;
  let inputs = declared.get(root);
  if (!inputs) declared.set(root, (inputs = new Set()));
  if (!inputs.has(gate)) {
    root.input(gate, 'int64', [1]);
    inputs.add(gate);
  }
  return gate;
}

/** `x` cut to the first `gate` entries along `axis`. */
export function gated(g: GraphBuilder, gate: Gate, x: string, axis: number): string {
  return g.op('Slice', [x, g.ints([0]), gateInput(g, gate), g.ints([axis])]);
}

/** A forward session whose callers need not know the gates: each gets its default unless fed. */
export function withGateDefaults(session: Session): Session {
  const gates = Object.keys(DEFAULTS).filter((n) => session.inputNames.includes(n));
  if (gates.length === 0) return session;
  const withDefaults = <T>(feeds: Record<string, T>): Record<string, T | NamedTensor> => {
    const all: Record<string, T | NamedTensor> = { ...feeds };
    for (const n of gates) all[n] ??= DEFAULTS[n]!;
    return all;
  };
  return {
    ...session,
    inputNames: session.inputNames.filter((n) => !gates.includes(n)),
    run: (feeds, fetches, into) => session.run(withDefaults(feeds), fetches, into),
    runKeeping: (feeds, fetches) => session.runKeeping(withDefaults(feeds), fetches),
  };
}

/** A gate's feed: `rows` rows. */
export function gateFeed(rows: number): NamedTensor {
  return { data: BigInt64Array.of(BigInt(rows)), dims: [1] };
}
