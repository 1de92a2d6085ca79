// The CLI's what-if runs: the analysis with heads ablated or residual cells patched (beside its
// clean twin), or the activation-patching heatmap against another prompt.
import type { Engine } from '../engine/engine';
import type { AnalyzeRequest } from '../engine/analyze';
import { EngineError } from '../engine/errors';
import type { Analysis } from '../shared/analysis';
import type { JsonExtras } from '../shared/export';
import { describeAblation, strongestCell, type HeadAblation, type Interventions, type PatchingResult } from '../shared/interventions';
import { parseAblationMode, parseCells, parseDirection, parseHeads, parseSite, parseToken, readPatchSource } from './whatif';
import type { ReportWhatIf } from './report';

export interface WhatIfValues {
  ablate?: string;
  ablation?: string;
  'patch-from'?: string;
  'patch-cells'?: string;
  'patch-direction'?: string;
  'patch-site'?: string;
  target?: string;
  contrast?: string;
}

export interface WhatIfOutcome {
  /** The run the JSON and the report are about (intervened when there are interventions). */
  analysis: Analysis;
  runId: number;
  patching: JsonExtras['patching'];
  report: ReportWhatIf;
  /** Lines for the terminal summary ('' when nothing was intervened). */
  summary: string;
}

const CLEAN = 1;
const OTHER = 2;

function refuseStray(values: WhatIfValues, heatmap: boolean): void {
  if (values.ablation !== undefined && values.ablate === undefined) throw new EngineError('BAD_REQUEST', '--ablation needs --ablate.');
  if (values['patch-cells'] !== undefined && values['patch-from'] === undefined)
    throw new EngineError('BAD_REQUEST', '--patch-cells needs --patch-from (the run the values come from).');
  if (values['patch-site'] !== undefined && values['patch-from'] === undefined)
    throw new EngineError('BAD_REQUEST', '--patch-site needs --patch-from (the run the values come from).');
  if (!heatmap)
    for (const k of ['patch-direction', 'target', 'contrast'] as const)
      if (values[k] !== undefined)
        throw new EngineError('BAD_REQUEST', `--${k} applies to the patching heatmap: --patch-from without --patch-cells.`);
}

/** The strongest cell of a heatmap, for the terminal summary. */
function strongest(r: PatchingResult): string {
  const best = strongestCell(r);
  if (!best) return 'no cell has a defined normalised value';
  const at = r.site === 'z' ? `head ${best.layer}.${best.col} (z)` : `${r.site} of layer ${best.layer} at position ${best.col}`;
  return `strongest cell: ${at} (normalised ${best.value.toFixed(3)})`;
}

export async function runWhatIf(engine: Engine, values: WhatIfValues, request: AnalyzeRequest): Promise<WhatIfOutcome> {
  const model = engine.requireModel();
  const heatmap = values['patch-from'] !== undefined && values['patch-cells'] === undefined;
  refuseStray(values, heatmap);
  const ablation: HeadAblation | undefined =
    values.ablate !== undefined ? { heads: parseHeads(values.ablate), mode: parseAblationMode(values.ablation) } : undefined;
  const source = values['patch-from'] !== undefined ? readPatchSource(values['patch-from'], model.info, model.tokenizer) : null;
  const clean = await engine.analyze(request, undefined, CLEAN);
  if (!ablation && !source) return { analysis: clean, runId: CLEAN, patching: null, report: {}, summary: '' };

  if (heatmap && source) {
    const corrupted = await engine.analyze({ ...request, text: undefined, ids: source.ids }, undefined, OTHER);
    const tk = model.tokenizer;
    const result = await engine.patching({
      type: 'patching',
      cleanRunId: CLEAN,
      corruptedRunId: OTHER,
      direction: parseDirection(values['patch-direction']),
      site: parseSite(values['patch-site']),
      target: parseToken('target', values.target, tk, model.spec.dVocab) ?? undefined,
      contrast: parseToken('contrast', values.contrast, tk, model.spec.dVocab),
      ablation,
    });
    let analysis = clean;
    let runId = CLEAN;
    if (ablation) {
      analysis = await engine.analyze({ ...request, interventions: { ablation }, pcaAxesOf: CLEAN }, undefined, 3);
      runId = 3;
    }
    const text = (id: number) => tk.tokenText(id);
    return {
      analysis,
      runId,
      patching: { result, cleanText: clean.text, corruptedText: corrupted.text, vocab: text },
      report: {
        diff: { a: CLEAN, b: OTHER, labels: ['this text (clean)', source.label] },
        patching: result,
        twinRunId: ablation ? CLEAN : undefined,
      },
      summary:
        `activation patching (${result.site}, ${result.direction}, ${result.metric === 'logprob' ? `log p(${JSON.stringify(text(result.target))})` : `logit ${JSON.stringify(text(result.target))} − ${JSON.stringify(text(result.contrast!))}`}): ` +
        `${result.n_layers} layers × ${result.site === 'z' ? `${result.n_heads} heads` : `${result.pos} positions`} in ${(result.ms / 1000).toFixed(1)} s (${result.runs} patched runs, ${result.skipped} cells unchanged); ${strongest(result)}\n`,
    };
  }

  const interventions: Interventions = { ablation };
  if (source) {
    const site = parseSite(values['patch-site']);
    const cells = values['patch-cells']!;
    interventions.patch =
      site === 'z'
        ? { sourceIds: source.ids, site, cells: [], heads: parseHeads(cells, '--patch-cells (site z)') }
        : { sourceIds: source.ids, site, cells: parseCells(cells, clean.tokens.length) };
  }
  // in the clean run's PCA axes: the report draws the two walks in one picture
  const analysis = await engine.analyze({ ...request, interventions, pcaAxesOf: CLEAN }, undefined, OTHER);
  const rec = analysis.cache.interventions;
  const lines = [
    rec?.ablation ? `intervention: ${describeAblation(rec.ablation)}` : null,
    rec?.patch
      ? `intervention: ${rec.patch.site === 'z' ? `z of ${rec.patch.heads.length} heads (every position)` : `${rec.patch.cells.length} cells of ${rec.patch.site}`} patched from ${source!.label} (${rec.patch.sourceTokens} tokens, aligned from the end)`
      : null,
  ].filter((l) => l !== null);
  return { analysis, runId: OTHER, patching: null, report: { twinRunId: CLEAN }, summary: lines.map((l) => `${l}\n`).join('') };
}
