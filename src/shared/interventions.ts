// Interventions on a run (what-if experiments), shared by the engine, the host, the CLI and the
// webview: head ablation and residual-stream patching, what a run records about them, and the
// activation-patching heatmap. Definitions: README "Metrics" (Interventions).

export interface HeadRef {
  layer: number;
  head: number;
}

/**
 * zero: the head's output z (hook_z, before W_O) is 0 at every position.
 * mean: z is the head's mean z over the positions of a clean run of the same input (the
 * analysed text; for generation, the prompt).
 */
export type AblationMode = 'zero' | 'mean';
export const ABLATION_MODES: readonly AblationMode[] = ['zero', 'mean'];

export interface HeadAblation {
  heads: HeadRef[];
  mode: AblationMode;
}

/** A (layer, position) cell of a position site: resid_pre[layer], attn_out[layer] or mlp_out[layer] at a position of the run. */
export interface ResidCell {
  layer: number;
  pos: number;
}

/**
 * Activation patching of one run: at each cell, the site's value in this run is replaced by the
 * source run's value at the aligned position (resid_pre: the residual stream entering the layer;
 * attn_out / mlp_out: what that layer's attention or MLP adds to it); site z replaces each of
 * `heads`' output z at every aligned position. Runs of different lengths are aligned from the
 * end: position p of this run ↔ p − (pos_this − pos_source) of the source.
 */
export interface ActivationPatch {
  /** The source run's token ids (the engine runs it, with the same head ablation, to read its values). */
  sourceIds: number[];
  /** What is patched; default resid_pre. */
  site?: PatchSite;
  /** Position sites: the cells patched (none for site z). */
  cells: ResidCell[];
  /** Site z: the heads patched at every aligned position (none for the position sites). */
  heads?: HeadRef[];
}

export interface Interventions {
  ablation?: HeadAblation;
  patch?: ActivationPatch;
}

/** What a run records about the interventions it had (null fields: none of that kind). */
export interface InterventionRecord {
  ablation: HeadAblation | null;
  patch: {
    sourceText: string;
    sourceTokens: number;
    site: PatchSite;
    /** Sorted by layer, then position ([] for site z). */
    cells: ResidCell[];
    /** Sorted by layer, then head ([] for the position sites). */
    heads: HeadRef[];
    alignment: 'end';
  } | null;
}

/** The patch changes something: it has cells, or heads (site z). */
export const patchesAnything = (p: ActivationPatch | undefined | null): boolean =>
  !!p && (p.cells.length > 0 || (p.heads?.length ?? 0) > 0);

export function hasInterventions(i: Interventions | undefined | null): boolean {
  return !!i && ((i.ablation?.heads.length ?? 0) > 0 || patchesAnything(i.patch));
}

export const headLabelOf = (h: HeadRef) => `L${h.layer}H${h.head}`;

/** "L3H1, L4H0 (mean)" */
export function describeAblation(a: HeadAblation): string {
  return `${a.heads.map(headLabelOf).join(', ')} (${a.mode} ablation)`;
}

/** "mlp_out L2 at position 5", "resid_pre: 3 cells", "z of L1H0" — what a recorded patch replaced. */
export function describePatch(p: NonNullable<InterventionRecord['patch']>): string {
  if (p.site === 'z') return `z of ${p.heads.map(headLabelOf).join(', ')}`;
  if (p.cells.length === 1) return `${p.site} L${p.cells[0]!.layer} at position ${p.cells[0]!.pos}`;
  return `${p.site}: ${p.cells.length} cells`;
}

/**
 * Activation patching between two prompts (the layer × position heatmap).
 * Direction: the `base` run is the one patched, with values from the `source` run.
 * denoising: base = corrupted, source = clean (how much does a cell restore the clean behaviour?)
 * noising:   base = clean, source = corrupted (how much does a cell break it?)
 */
export type PatchDirection = 'denoise' | 'noise';

/**
 * What a patch replaces, TransformerLens's hook names. At (layer L, position p): resid_pre, the
 * residual stream entering block L; attn_out / mlp_out, that block's attention or MLP output as
 * it is added to the residual stream (after any post-norm). At (layer L, head h): z, that head's
 * output before W_O, at every position at once.
 */
export type PatchSite = 'resid_pre' | 'attn_out' | 'mlp_out' | 'z';
/** The sites patched one (layer, position) cell at a time. */
export type PositionSite = Exclude<PatchSite, 'z'>;
export const POSITION_SITES: readonly PositionSite[] = ['resid_pre', 'attn_out', 'mlp_out'];
export const PATCH_SITES: readonly PatchSite[] = [...POSITION_SITES, 'z'];

export function isPatchSite(v: unknown): v is PatchSite {
  return (PATCH_SITES as readonly unknown[]).includes(v);
}

/** The heatmap's columns: the base run's positions, or the heads (site z). */
export function patchColumns(r: Pick<PatchingResult, 'site' | 'pos' | 'n_heads'>): number {
  return r.site === 'z' ? r.n_heads : r.pos;
}

/**
 * The heatmap cell that matters most: denoising, the one that restores the clean prediction
 * most (highest normalised value); noising, the one that breaks it most (lowest). Null when no
 * cell has a defined value.
 */
export function strongestCell(r: PatchingResult): { layer: number; col: number; value: number } | null {
  const score = (v: number) => (r.direction === 'denoise' ? v : -v);
  let best = -1;
  for (let i = 0; i < r.normalized.length; i++) {
    const v = r.normalized[i]!;
    if (Number.isFinite(v) && (best < 0 || score(v) > score(r.normalized[best]!))) best = i;
  }
  if (best < 0) return null;
  const n = patchColumns(r);
  return { layer: Math.floor(best / n), col: best % n, value: r.normalized[best]! };
}

export interface PatchingRequest {
  /** The clean and corrupted prompts' token ids. */
  cleanIds: number[];
  corruptedIds: number[];
  direction: PatchDirection;
  /** What is patched; default resid_pre. */
  site?: PatchSite;
  /** Target token; default: the clean run's top-1 prediction at its last position. */
  target?: number;
  /**
   * Contrast token: LD = logit(target) − logit(contrast). Default: the corrupted run's top-1
   * at its last position when it differs from the target; null: no contrast, LD = log p(target).
   */
  contrast?: number | null;
  /** Head ablation applied to every run (clean, corrupted and patched). */
  ablation?: HeadAblation;
}

export interface PatchingResult {
  direction: PatchDirection;
  site: PatchSite;
  n_layers: number;
  /** Positions of the base run (the heatmap's columns but for site z); the source is aligned from the end. */
  pos: number;
  /** Heads per layer (the heatmap's columns for site z). */
  n_heads: number;
  /** base position p ↔ source position p − offset (negative source positions are not patchable). */
  offset: number;
  target: number;
  contrast: number | null;
  /** 'logit_diff': logit(target) − logit(contrast); 'logprob': log p(target). */
  metric: 'logit_diff' | 'logprob';
  ldClean: number;
  ldCorrupted: number;
  /**
   * LD of each patched run [n_layers, pos] (site[L] at p; site z: [n_layers, n_heads], head h of
   * layer L at every aligned position); NaN where nothing is patchable.
   */
  ld: Float32Array;
  /** (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted), the shape of `ld`; NaN where undefined. */
  normalized: Float32Array;
  /**
   * Cells whose patch changes nothing and took the base run's value without a run: equal
   * vectors, or a sublayer output of the last layer before the last position.
   */
  skipped: number;
  /** Patched runs actually computed, and the onnxruntime calls they took. */
  runs: number;
  calls: number;
  /** Positions × layers recomputed through a whole block (the work done, in layer-positions). */
  layerPositions: number;
  /** Rows of the last layer that only need their keys and values (every row of a run but its last). */
  kvOnlyRows: number;
  ms: number;
}
