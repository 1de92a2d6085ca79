// The panel's state in one object; views subscribe and re-render what changed.
import type { AnalysisPayload, HostToWebview, LensColorMode, PanelSettings, RunState } from '../src/shared/protocol';
import type { CompletionsState } from './shapeCompletions';
import type { WhatIfState } from './shapeWhatIf';
import type { HeadAblation } from '../src/shared/interventions';

export interface AppState {
  payload: AnalysisPayload | null;
  runState: RunState;
  settings: PanelSettings;
  /** Model name from modelChanged (shown before any analysis). */
  modelName: string | null;
  tab: string;
  /** Selected token position (−1 before any data). */
  selectedPos: number;
  /** A second position to highlight (the j of a similarity cell), or null. */
  highlightPos: number | null;
  lensColor: LensColorMode;
  trajectoryDims: 2 | 3;
  /** Row of the walk shown on the similarity heatmap. */
  similarityRow: number;
  /** Tint the token strip by surprisal. */
  surprisalTint: boolean;
  /** Bumped on every theme change so views recolour. */
  themeVersion: number;
  /** Completions tab: the columns and the streamed completions (shapeCompletions.ts). */
  completions: CompletionsState;
  /** Diff tab: the last prompt comparison from the host (Compare Prompts…), or null. */
  promptDiff: PromptDiff | null;
  /** What-if: the clean run and its intervened twin (`payload` is the one shown), or null. */
  whatIf: WhatIfState | null;
  /** Heads chosen for ablation (Attention tab) and how; kept across runs. */
  ablation: HeadAblation;
  /** An ablated re-run in progress, or why the last one failed. */
  whatIfStatus: { kind: 'idle' } | { kind: 'running' } | { kind: 'error'; message: string };
}

/** A prompt comparison as the host sends it. */
export type PromptDiff = Omit<Extract<HostToWebview, { type: 'promptDiff' }>, 'type'>;

export type Key = keyof AppState;
export type Listener = (s: Readonly<AppState>, changed: ReadonlySet<Key>) => void;

export class Store {
  private listeners: Listener[] = [];
  constructor(private s: AppState) {}

  get state(): Readonly<AppState> {
    return this.s;
  }

  set(patch: Partial<AppState>): void {
    const changed = new Set<Key>();
    for (const k of Object.keys(patch) as Key[]) {
      if (this.s[k] !== patch[k]) changed.add(k);
    }
    if (changed.size === 0) return;
    this.s = { ...this.s, ...patch };
    for (const l of this.listeners) l(this.s, changed);
  }

  subscribe(l: Listener): void {
    this.listeners.push(l);
  }
}
