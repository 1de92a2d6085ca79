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

/** A cell of the residual stream: resid_pre[layer] at a position of the run. */
export interface ResidCell {
  layer: number;
  pos: number;
}

/**
 * Residual-stream patching: at each cell, resid_pre[layer][pos] of this run is replaced by the
 * source run's resid_pre[layer] at the aligned position. Runs of different lengths are aligned
 * from the end: position p of this run ↔ p − (pos_this − pos_source) of the source.
 */
export interface ResidPatch {
  /** The source run's token ids (the engine runs it clean to read its residual stream). */
  sourceIds: number[];
  cells: ResidCell[];
}

export interface Interventions {
  ablation?: HeadAblation;
  patch?: ResidPatch;
}

/** What a run records about the interventions it had (null fields: none of that kind). */
export interface InterventionRecord {
  ablation: HeadAblation | null;
  patch: { sourceText: string; sourceTokens: number; cells: ResidCell[]; alignment: 'end' } | null;
}

export function hasInterventions(i: Interventions | undefined | null): boolean {
  return !!i && ((i.ablation?.heads.length ?? 0) > 0 || (i.patch?.cells.length ?? 0) > 0);
}

export const headLabelOf = (h: HeadRef) => `L${h.layer}H${h.head}`;

/** "L3H1, L4H0 (mean)" */
export function describeAblation(a: HeadAblation): string {
  return `${a.heads.map(headLabelOf).join(', ')} (${a.mode} ablation)`;
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
export const POSITION_SITES: readonly PatchSite[] = ['resid_pre', 'attn_out', 'mlp_out'];
export const PATCH_SITES: readonly PatchSite[] = [...POSITION_SITES, 'z'];

export function isPatchSite(v: unknown): v is PatchSite {
  return (PATCH_SITES as readonly unknown[]).includes(v);
}

/** The heatmap's columns: the base run's positions, or the heads (site z). */
export function patchColumns(r: Pick<PatchingResult, 'site' | 'pos' | 'n_heads'>): number {
  return r.site === 'z' ? r.n_heads : r.pos;
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
