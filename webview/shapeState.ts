// The panel's persisted state (VS Code getState/setState): read defensively, since it may come
// from an older build, and clamped against the data that arrives.
import type { AnalysisPayload, LensColorMode, PersistedState } from '../src/shared/protocol';
import { isPersistedState } from '../src/shared/protocol';
import { isLensColorMode } from './shapeLens';

export const DEFAULT_STATE: PersistedState = {
  version: 1,
  text: '',
  source: null,
  tab: 'lens',
  selectedPos: -1,
  similarityRow: -1,
  lensColor: 'prob',
  trajectoryDims: 2,
};

/** A complete PersistedState from whatever getState() returned (defaults for anything missing or wrong). */
export function readPersisted(raw: unknown): PersistedState {
  if (!isPersistedState(raw)) return { ...DEFAULT_STATE };
  const s = raw as PersistedState & Record<string, unknown>;
  const lensColor: LensColorMode = isLensColorMode(s.lensColor) ? s.lensColor : 'prob';
  const src = s.source;
  const source =
    src && typeof src === 'object' && typeof src.uri === 'string' && typeof src.fileName === 'string' && Number.isInteger(src.offset)
      ? src
      : null;
  return {
    version: 1,
    text: s.text,
    source,
    tab: s.tab,
    selectedPos: s.selectedPos,
    similarityRow: Number.isInteger(s.similarityRow) ? s.similarityRow : -1,
    lensColor,
    trajectoryDims: s.trajectoryDims === 3 ? 3 : 2,
  };
}

/** The position to select when a payload arrives: keep a valid previous one, else the last token. */
export function initialPosition(prev: number, T: number): number {
  if (T <= 0) return 0;
  return Number.isInteger(prev) && prev >= 0 && prev < T ? prev : T - 1;
}

/** The similarity row to show: a valid previous choice, else the one the payload carries. */
export function initialSimilarityRow(prev: number, payload: Pick<AnalysisPayload, 'walk' | 'dims'>): number {
  const rows = payload.dims.n_layers + 1;
  return Number.isInteger(prev) && prev >= 0 && prev < rows ? prev : payload.walk.similarity.row;
}

/** Next selection for a ←/→ key, clamped to [0, T). */
export function stepPosition(pos: number, delta: number, T: number): number {
  if (T <= 0) return 0;
  return Math.max(0, Math.min(T - 1, pos + delta));
}

/**
 * Whether a tab shows the analysis (the lens, trajectories, attention …): Diff and Completions
 * show other texts (two prompts, generated columns), so the token strip of the analysis is
 * hidden there and a new analysis does not land on them.
 */
export function tabShowsAnalysis(tab: string): boolean {
  return tab !== 'diff' && tab !== 'completions';
}

/**
 * The tab to show when a new analysis arrives: the one on show when it shows the analysis, else
 * the logit lens (Analyze Selection after Compare Prompts would leave the old comparison on show).
 */
export function tabForAnalysis(tab: string): string {
  return tabShowsAnalysis(tab) ? tab : 'lens';
}
