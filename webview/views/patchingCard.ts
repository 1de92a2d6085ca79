// Activation patching between the two prompts of the Diff tab: which prompt is clean, the
// direction (denoise: clean values into the corrupted run; noise: the reverse), what is patched
// (the residual stream, or each layer's attention or MLP output, or all three, one heatmap above
// the other), the target and contrast tokens, and the layer × position heatmap of the normalised
// logit difference (README "Metrics"). Runs of different lengths are aligned from the end.
// Clicking a cell (or Open strongest cell) analyses that patched run: every view then shows it
// beside the unpatched prompt.
import { el, toolButton } from '../dom';
import { imageName } from '../shapeExport';
import { alignmentText, PATCH_SITE_TEXT, patchingZ, targetChoices } from '../shapeWhatIf';
import { fmt, plotlyToken, tokenDisplay } from '../shapeText';
import type { PromptDiff } from '../store';
import {
  patchColumns,
  POSITION_SITES,
  strongestCell,
  type PatchDirection,
  type PatchingResult,
  type PatchSite,
} from '../../src/shared/interventions';
import type { AnalysisPayload } from '../../src/shared/protocol';
import { ChartCard, axisStyle, baseLayout, c, type Data, type Layout } from './chart';
import type { ViewContext } from './context';
import { fillNote, segmented } from './dynamicsCard';

type CleanSide = 'a' | 'b';
/** A heatmap cell: (layer, position), or for site z (layer, head). */
type Cell = { layer: number; col: number };
type Shape = NonNullable<Layout['shapes']>[number];
/** A site, or all three position sites (one heatmap per site, in POSITION_SITES order). */
type SiteChoice = PatchSite | 'all';
const sitesOf = (c: SiteChoice): readonly PatchSite[] => (c === 'all' ? POSITION_SITES : [c]);
const choiceText = (v: PatchSite) => ({ value: v, text: PATCH_SITE_TEXT[v].button, title: PATCH_SITE_TEXT[v].title });

export interface PatchingCard {
  el: HTMLElement;
  /** A new prompt comparison (or the same one redrawn: theme). */
  show(d: PromptDiff): Promise<void>;
}

export function createPatchingCard(ctx: ViewContext): PatchingCard {
  let diff: PromptDiff | null = null;
  let cleanSide: CleanSide = 'a';
  let direction: PatchDirection = 'denoise';
  let site: SiteChoice = 'resid_pre';
  let target: number | undefined;
  let contrast: number | null | undefined;
  /** The heatmaps on show: one per site of `site` (same direction, target and contrast). */
  let results: PatchingResult[] = [];
  /** Which prompt was clean when `results` were computed. */
  let resultSide: CleanSide = 'a';
  let running = false;
  /** A cell being opened as a whole run (its label), or null. */
  let opening: string | null = null;
  /** The cells picked with Shift+click (one site), to be opened patched together. */
  let picked: { site: PatchSite; cells: Cell[] } | null = null;

  const sideCtl = segmented<CleanSide>(
    'Clean prompt',
    [
      { value: 'a', text: 'A', title: 'A is the clean prompt, B the corrupted one' },
      { value: 'b', text: 'B', title: 'B is the clean prompt, A the corrupted one' },
    ],
    (v) => {
      cleanSide = v;
      target = contrast = undefined;
      void invalidate();
    },
  );
  const dirCtl = segmented<PatchDirection>(
    'Direction',
    [
      {
        value: 'denoise',
        text: 'denoise',
        title: 'Patch the clean run’s values into the corrupted run: which cells restore the clean prediction?',
      },
      { value: 'noise', text: 'noise', title: 'Patch the corrupted run’s values into the clean run: which cells break it?' },
    ],
    (v) => {
      direction = v;
      void invalidate();
    },
  );
  const siteCtl = segmented<SiteChoice>(
    'Patched activation',
    [
      ...POSITION_SITES.map(choiceText),
      {
        value: 'all' as const,
        text: 'all three',
        title: 'Patch the residual stream, the attention outputs and the MLP outputs: three heatmaps, one above the other (three sweeps)',
      },
      choiceText('z'),
    ],
    (v) => {
      site = v;
      void invalidate();
    },
  );
  const targetSel = el('select', { class: 'comp-input pat-target', attrs: { 'aria-label': 'Target token' } });
  const contrastSel = el('select', { class: 'comp-input pat-contrast', attrs: { 'aria-label': 'Contrast token' } });
  targetSel.addEventListener('change', () => {
    target = targetSel.value === '' ? undefined : Number(targetSel.value);
    void invalidate();
  });
  contrastSel.addEventListener('change', () => {
    contrast = contrastSel.value === '' ? undefined : contrastSel.value === 'none' ? null : Number(contrastSel.value);
    void invalidate();
  });
  const runBtn = toolButton(
    'Run patching',
    'play',
    'Patch every layer × position (one patched run per cell; unchanged cells are skipped)',
    () => void run(),
  );
  runBtn.classList.add('primary');
  const pickedBtn = toolButton(
    'Open picked cells',
    'layers',
    'Analyse the run with the cells picked with Shift+click patched together',
    () => void openPicked(),
  );
  const unpickBtn = toolButton('Unpick', 'close', 'Forget the cells picked with Shift+click', () => void clearPicked());
  const openBtn = toolButton(
    'Open strongest cell',
    'go-to-file',
    'Analyse the run patched at the cell that restores (denoise) or breaks (noise) the prediction most: every view then shows it beside the unpatched prompt',
    () => void openStrongest(),
  );
  const status = el('span', { class: 'chart-status', attrs: { 'aria-live': 'polite' } });
  // each label wraps with its control in a narrow panel
  const group = (label: string, ...ctl: HTMLElement[]) =>
    el('span', { class: 'pat-group' }, [el('label', { class: 'bar-label', text: label }), ...ctl]);
  const controls = el('div', { class: 'view-bar pat-bar' }, [
    group('Clean', sideCtl.el),
    group('Direction', dirCtl.el),
    group('Patch', siteCtl.el),
    group('Target', targetSel),
    group('vs', contrastSel),
    runBtn,
    openBtn,
    pickedBtn,
    unpickBtn,
    status,
  ]);
  const note = el('div', { class: 'dyn-note' });
  note.hidden = true;
  const summary = el('div', { class: 'pat-summary' });
  const chart = new ChartCard(
    ctx,
    'Activation patching: normalised logit difference',
    () => imageName('activation-patching', diff?.a.model.name ?? 'model', `${site}-${direction}`),
    'pat-heat',
  );
  const root = el('section', { class: 'pat-card' }, [controls, note, summary, chart.el]);

  const sides = (): { clean: AnalysisPayload; corrupted: AnalysisPayload; cleanName: string; corruptedName: string } | null => {
    if (!diff) return null;
    return cleanSide === 'a'
      ? { clean: diff.a, corrupted: diff.b, cleanName: 'A', corruptedName: 'B' }
      : { clean: diff.b, corrupted: diff.a, cleanName: 'B', corruptedName: 'A' };
  };

  const fillTokens = () => {
    const s = sides();
    targetSel.replaceChildren();
    contrastSel.replaceChildren();
    if (!s) return;
    const choices = targetChoices(s.clean, s.corrupted);
    const label = (x: { text: string; source: string }) => `${tokenDisplay({ text: x.text }).text} (${x.source} top)`;
    targetSel.append(el('option', { text: 'clean run’s top prediction', attrs: { value: '' } }));
    contrastSel.append(el('option', { text: 'corrupted run’s top (if different)', attrs: { value: '' } }));
    contrastSel.append(el('option', { text: 'none: log p(target)', attrs: { value: 'none' } }));
    for (const x of choices) {
      targetSel.append(el('option', { text: label(x), attrs: { value: x.id, selected: target === x.id } }));
      contrastSel.append(el('option', { text: label(x), attrs: { value: x.id, selected: contrast === x.id } }));
    }
    if (contrast === null) contrastSel.value = 'none';
  };

  const matches = (rs: PatchingResult[]) =>
    rs.length === sitesOf(site).length &&
    rs.every(
      (r, i) =>
        r.direction === direction &&
        r.site === sitesOf(site)[i] &&
        (target === undefined || r.target === target) &&
        (contrast === undefined || r.contrast === contrast),
    );

  /** Settings changed: the heatmap shown no longer answers them. */
  const invalidate = async () => {
    sideCtl.set(cleanSide);
    dirCtl.set(direction);
    siteCtl.set(site);
    fillTokens();
    if (results.length > 0 && !(matches(results) && resultSide === cleanSide)) {
      results = [];
      picked = cursor = null;
      chart.el.hidden = true;
      summary.textContent = '';
    }
    paintStatus();
  };

  const paintStatus = (progress = '') => {
    runBtn.disabled = running || !diff;
    openBtn.hidden = results.length === 0;
    openBtn.disabled = running || opening !== null;
    if (picked && !results.some((r) => r.site === picked!.site)) picked = null; // (its heatmap is gone)
    pickedBtn.hidden = unpickBtn.hidden = !picked;
    pickedBtn.disabled = running || opening !== null;
    if (picked) {
      pickedBtn.lastElementChild!.textContent = `Open ${cellsLabel(picked.site, picked.cells)}`;
    }
    if (opening !== null) {
      status.textContent = `Analysing the run patched at ${opening}…`;
      return;
    }
    const sum = (k: 'runs' | 'skipped' | 'ms') => results.reduce((t, r) => t + r[k], 0);
    status.textContent = running
      ? `Patching${progress}…`
      : results.length > 0
        ? `${results.length > 1 ? `${results.length} heatmaps: ` : ''}${sum('runs')} patched runs, ${sum('skipped')} unchanged cells, ${(sum('ms') / 1000).toFixed(1)} s`
        : '';
  };

  const run = async () => {
    const s = sides();
    if (!s || running) return;
    running = true;
    note.hidden = true;
    paintStatus();
    // the settings as they are now: a change while the sweeps run leaves them to finish as asked
    const [side, dir, want] = [cleanSide, direction, sitesOf(site)];
    try {
      const done: PatchingResult[] = [];
      for (const [i, one] of want.entries()) {
        if (want.length > 1) paintStatus(` ${one} (${i + 1} of ${want.length})`);
        // the later sweeps take the tokens the first one chose, so the heatmaps share one metric
        const first = done[0];
        const t = first ? first.target : target;
        const c = first ? first.contrast : contrast;
        done.push(
          await ctx.host.request('patching', {
            cleanRunId: s.clean.runId,
            corruptedRunId: s.corrupted.runId,
            direction: dir,
            site: one,
            ...(t !== undefined ? { target: t } : {}),
            ...(c !== undefined ? { contrast: c } : {}),
          }),
        );
      }
      results = done;
      picked = cursor = null;
      resultSide = side;
      await invalidate(); // settings changed while it ran: not on show
      if (results.length > 0) await draw();
    } catch (e) {
      fillNote(note, 'warning', 'Activation patching failed.', (e as Error).message);
    } finally {
      running = false;
      paintStatus();
    }
  };

  /** "L0 mlp_out · pos 9", "3 cells of mlp_out", "2 heads (z)". */
  const cellsLabel = (site: PatchSite, cells: readonly Cell[]) =>
    cells.length === 1
      ? PATCH_SITE_TEXT[site].cell(cells[0]!.layer, cells[0]!.col)
      : site === 'z'
        ? `${cells.length} heads (z)`
        : `${cells.length} cells of ${site}`;

  /** Nothing was patched in the cell (its position has no aligned token in the other prompt). */
  const emptyCell = (r: PatchingResult, c: Cell): boolean => !Number.isFinite(r.ld[c.layer * patchColumns(r) + c.col]!);

  /**
   * Analyses the run patched at these cells (one site); the host answers with it as the shown
   * analysis and the unpatched run as its twin.
   */
  const open = async (r: PatchingResult, cells: Cell[]) => {
    const s = sides();
    if (!s || running || opening !== null || cells.length === 0) return;
    const n = patchColumns(r);
    if (cells.some((c) => c.layer < 0 || c.layer >= r.n_layers || c.col < 0 || c.col >= n)) return;
    const label = cellsLabel(r.site, cells);
    if (cells.every((c) => emptyCell(r, c))) {
      fillNote(
        note,
        'info',
        `Nothing to open at ${label}.`,
        'That position has no aligned token in the other prompt: nothing was patched there.',
      );
      return;
    }
    note.hidden = true;
    opening = label;
    paintStatus();
    try {
      await ctx.host.request('openPatched', {
        cleanRunId: s.clean.runId,
        corruptedRunId: s.corrupted.runId,
        direction: r.direction,
        site: r.site,
        cells: cells.filter((c) => !emptyCell(r, c)),
      });
    } catch (e) {
      // (a newer run, of this cell or an analysis, took its place: nothing went wrong)
      const msg = (e as Error).message;
      if (!/superseded|cancelled/i.test(msg)) fillNote(note, 'warning', `Could not analyse the run patched at ${label}.`, msg);
    } finally {
      opening = null;
      paintStatus();
    }
  };

  const openStrongest = async () => {
    // over every heatmap on show (all three: the strongest of the three sites)
    const best = results
      .map((r) => ({ r, c: strongestCell(r) }))
      .filter((x) => x.c !== null)
      .sort((x, y) => (x.r.direction === 'denoise' ? y.c!.value - x.c!.value : x.c!.value - y.c!.value))[0];
    if (!best) {
      fillNote(note, 'info', 'No cell to open.', 'No cell of the heatmap has a defined value (LD_clean = LD_corrupted).');
      return;
    }
    await open(best.r, [{ layer: best.c!.layer, col: best.c!.col }]);
  };

  /** Shift+click: adds the cell to the picked ones, or takes it out (a cell of another site starts over). */
  const togglePick = async (r: PatchingResult, c: Cell) => {
    if (emptyCell(r, c)) return;
    if (!picked || picked.site !== r.site) picked = { site: r.site, cells: [] };
    const i = picked.cells.findIndex((x) => x.layer === c.layer && x.col === c.col);
    if (i >= 0) picked.cells.splice(i, 1);
    else picked.cells.push(c);
    if (picked.cells.length === 0) picked = null;
    paintStatus();
    await draw();
  };

  const openPicked = async () => {
    const r = picked && results.find((x) => x.site === picked!.site);
    if (r && picked) await open(r, [...picked.cells]);
  };

  const clearPicked = async () => {
    picked = null;
    paintStatus();
    await draw();
  };

  // Keyboard: the heatmap takes focus; the arrows move a cursor cell (↑ a layer up; past the
  // top or bottom of one of the three heatmaps, into the next), Enter opens it, Space picks it.
  /** The keyboard's cell: which heatmap, and where. */
  let cursor: { heat: number; layer: number; col: number } | null = null;
  chart.plot.tabIndex = 0;
  chart.plot.setAttribute('role', 'grid');
  chart.plot.setAttribute(
    'aria-label',
    'Activation patching heatmap: the arrow keys move between cells, Enter opens the patched run, Space picks a cell to patch with others',
  );
  const cellText = (r: PatchingResult, L: number, col: number) => {
    const v = r.normalized[L * patchColumns(r) + col]!;
    return `${PATCH_SITE_TEXT[r.site].cell(L, col)}: ${Number.isFinite(v) ? `normalised ${fmt(v, 3)}` : 'nothing patched'}`;
  };
  const moveCursor = async (to: { heat: number; layer: number; col: number }) => {
    cursor = to;
    const r = results[to.heat]!;
    status.textContent = cellText(r, to.layer, to.col);
    await draw();
  };
  chart.plot.addEventListener('focus', () => {
    if (cursor || results.length === 0) return;
    const best = strongestCell(results[0]!);
    void moveCursor({ heat: 0, layer: best?.layer ?? 0, col: best?.col ?? 0 });
  });
  chart.plot.addEventListener('keydown', (e) => {
    if (!cursor || results.length === 0) return;
    const r = results[cursor.heat];
    if (!r) return;
    const cols = patchColumns(r);
    let { heat, layer, col } = cursor;
    switch (e.key) {
      case 'ArrowLeft':
        col = Math.max(0, col - 1);
        break;
      case 'ArrowRight':
        col = Math.min(cols - 1, col + 1);
        break;
      case 'ArrowUp': // a layer up; from the top layer, into the heatmap above
        if (layer + 1 < r.n_layers) layer++;
        else if (heat > 0) [heat, layer] = [heat - 1, 0];
        break;
      case 'ArrowDown':
        if (layer > 0) layer--;
        else if (heat + 1 < results.length) [heat, layer] = [heat + 1, results[heat + 1]!.n_layers - 1];
        break;
      case 'Enter':
        e.preventDefault();
        void open(r, [{ layer, col }]);
        return;
      case ' ':
        e.preventDefault();
        void togglePick(r, { layer, col });
        return;
      default:
        return;
    }
    e.preventDefault();
    void moveCursor({ heat, layer, col: Math.min(col, patchColumns(results[heat]!) - 1) });
  });

  chart.on('plotly_click', (ev) => {
    const pt = ev.points[0];
    const r = pt ? results[pt.curveNumber] : undefined;
    if (!pt || !r) return;
    const c = { layer: Number(pt.y), col: Number(pt.x) };
    const mouse = (ev as unknown as { event?: MouseEvent }).event;
    if (mouse?.shiftKey) void togglePick(r, c);
    else void open(r, [c]);
  });

  const draw = async () => {
    const s = sides();
    const r = results[0];
    if (!s || !r) return;
    const pal = ctx.palette();
    const base = r.direction === 'denoise' ? s.corrupted : s.clean;
    const source = r.direction === 'denoise' ? s.clean : s.corrupted;
    const baseName = r.direction === 'denoise' ? `${s.corruptedName} (corrupted)` : `${s.cleanName} (clean)`;
    const sourceName = r.direction === 'denoise' ? `${s.cleanName} (clean)` : `${s.corruptedName} (corrupted)`;
    const tok = (id: number) => tokenDisplay({ text: s.clean.vocab[id] ?? s.corrupted.vocab[id] ?? String(id) }).text;
    const metric = r.metric === 'logprob' ? `log p(${tok(r.target)})` : `logit(${tok(r.target)}) − logit(${tok(r.contrast!)})`;
    const byHead = r.site === 'z';
    const what =
      results.length > 1
        ? 'the residual stream, the attention outputs and the MLP outputs (one heatmap each)'
        : PATCH_SITE_TEXT[r.site].what;
    summary.replaceChildren(
      el('div', {
        text: `LD = ${metric} at the last position: clean ${fmt(r.ldClean, 3)}, corrupted ${fmt(r.ldCorrupted, 3)}. Cell = (LD_patched − LD_corrupted) / (LD_clean − LD_corrupted): 1 = the clean prediction, 0 = the corrupted one.`,
      }),
      el('div', {
        class: 'muted',
        text: `Patching ${what} of ${baseName} with ${sourceName}'s values, one ${byHead ? 'head at a time, at all its positions at once' : 'cell at a time'}. ${alignmentText(r, baseName, sourceName)}`,
      }),
      el('div', {
        class: 'muted',
        text: `Click a cell to analyse that patched run: every view then shows ${baseName} patched there, beside ${baseName} unpatched (the what-if bar compares them). Shift+click picks several cells of one heatmap to patch together.`,
      }),
    );
    // columns: the base run's positions, or the heads (z: each head patched at every position)
    const x = Array.from({ length: byHead ? r.n_heads : r.pos }, (_, i) => i);
    const y = Array.from({ length: r.n_layers }, (_, L) => L);
    const ax = axisStyle(pal);
    const ticks = byHead
      ? { dtick: 1 }
      : r.pos <= 48
        ? { tickmode: 'array' as const, tickvals: x, ticktext: base.tokens.map((t) => plotlyToken(t.text, 8)), tickangle: -60 }
        : {};
    // one heatmap per site, from the top down; they share the positions (x) and the colour scale
    const n = results.length;
    const gap = n > 1 ? 0.05 : 0;
    const yName = (i: number) => (i === 0 ? 'y' : `y${i + 1}`);
    const yAxis = (i: number) => (i === 0 ? 'yaxis' : `yaxis${i + 1}`);
    const traces = results.map((ri, i): Data => {
      const z = patchingZ(ri, 'normalized');
      const lds = patchingZ(ri, 'ld');
      const hover = y.map((L) =>
        x.map((p) => {
          // p: a position, or for heads (z) a head
          const v = z[L]![p];
          const value = `normalised ${fmt(v ?? NaN, 3)} · LD ${fmt(lds[L]![p] ?? NaN, 3)}`;
          const undef = 'undefined (LD_clean = LD_corrupted)';
          const heading = PATCH_SITE_TEXT[ri.site].cell(L, p);
          if (byHead) return `${heading}<br>${v === null || v === undefined ? undef : value}<br><i>click: open this patched run</i>`;
          const q = p - ri.offset;
          const at = `${heading} <b>${plotlyToken(base.tokens[p]?.text ?? '')}</b>`;
          if (v === null || v === undefined) return `${at}<br>${q < 0 ? `no aligned token in ${sourceName}` : undef}`;
          return `${at} ← ${plotlyToken(source.tokens[q]?.text ?? '')}<br>${value}<br><i>click: open this patched run</i>`;
        }),
      );
      return {
        type: 'heatmap',
        z,
        x,
        y,
        xaxis: 'x',
        yaxis: yName(i),
        zmin: 0,
        zmax: 1,
        colorscale: [
          [0, c(pal.orange)],
          [0.5, c(pal.bg)],
          [1, c(pal.blue)],
        ],
        hovertext: hover,
        hoverinfo: 'text',
        xgap: x.length <= 64 ? 1 : 0,
        ygap: 1,
        showscale: i === 0,
        colorbar: {
          thickness: 8,
          len: 0.9,
          outlinewidth: 0,
          tickvals: [0, 0.5, 1],
          ticktext: ['0 corrupted', '0.5', '1 clean'],
          tickfont: { size: 10, color: c(pal.muted) },
        },
      } as Data;
    });
    const yAxes = Object.fromEntries(
      results.map((ri, i) => [
        yAxis(i),
        {
          ...ax,
          title: { text: `layer (${ri.site})`, font: { size: 11, color: c(pal.muted) } },
          showgrid: false,
          zeroline: false,
          dtick: 1,
          domain: [1 - (i + 1) / n + (i + 1 < n ? gap / 2 : 0), 1 - i / n - (i > 0 ? gap / 2 : 0)],
          anchor: 'x',
        },
      ]),
    );
    chart.el.hidden = false;
    chart.el.classList.toggle('pat-all', n > 1);
    // the cells picked with Shift+click, outlined in their heatmap
    const pickedAt = picked ? results.findIndex((ri) => ri.site === picked!.site) : -1;
    const outlines: Shape[] =
      picked && pickedAt >= 0
        ? picked.cells.map((cell) => ({
            type: 'rect' as const,
            xref: 'x' as const,
            yref: yName(pickedAt) as 'y',
            x0: cell.col - 0.5,
            x1: cell.col + 0.5,
            y0: cell.layer - 0.5,
            y1: cell.layer + 0.5,
            line: { color: c(pal.fg), width: 2 },
            fillcolor: 'rgba(0,0,0,0)',
          }))
        : [];
    // the keyboard's cell, dashed
    if (cursor && results[cursor.heat])
      outlines.push({
        type: 'rect' as const,
        xref: 'x' as const,
        yref: yName(cursor.heat) as 'y',
        x0: cursor.col - 0.5,
        x1: cursor.col + 0.5,
        y0: cursor.layer - 0.5,
        y1: cursor.layer + 0.5,
        line: { color: c(pal.fg), width: 2, dash: 'dot' },
        fillcolor: 'rgba(0,0,0,0)',
      });
    await chart.draw(traces, {
      ...baseLayout(pal),
      shapes: outlines,
      margin: { l: 44, r: 8, t: 8, b: 40 },
      xaxis: {
        ...ax,
        ...ticks,
        anchor: yName(n - 1) as 'y',
        title: { text: byHead ? 'head' : `position in ${baseName}`, font: { size: 11, color: c(pal.muted) } },
        showgrid: false,
        zeroline: false,
      },
      ...yAxes,
    });
  };

  return {
    el: root,
    async show(d: PromptDiff) {
      if (d !== diff) {
        diff = d;
        picked = cursor = null;
        const r = d.patching ? { ...d.patching, site: d.patching.site ?? 'resid_pre' } : null; // (saved before sites existed)
        results = r ? [r] : [];
        if (r) {
          direction = r.direction;
          site = r.site;
          target = r.target;
          contrast = r.contrast;
          resultSide = cleanSide = 'a';
        } else target = contrast = undefined;
        chart.el.hidden = !r;
        summary.textContent = '';
      }
      await invalidate();
      if (results.length > 0) await draw();
    },
  };
}
