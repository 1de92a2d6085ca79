// The tokens as the model sees them: whitespace visible, byte-fallback pieces and special
// tokens marked, optionally tinted by surprisal. Clicking selects a position.
import '@vscode-elements/elements/dist/vscode-checkbox/index.js';
import { clear, el } from '../dom';
import { mix, rampIndex, readableOn, toCss, type Rgba } from '../shapeColor';
import { surprisalBits } from '../shapeLens';
import { fmt, pct, splitCharacter, tokenDisplay } from '../shapeText';
import type { AppState } from '../store';
import type { ViewContext } from './context';
import { comparison, divergingIndex, pairDelta, pairNames, surprisalAt, type Comparison } from '../shapeWhatIf';
import { tabShowsAnalysis } from '../shapeState';

const STEPS = 32;
/** Δ surprisal (bits) at full strength of the what-if difference tint. */
const DELTA_BITS = 4;

export function createTokenStrip(ctx: ViewContext): HTMLElement {
  const list = el('div', { class: 'strip-tokens', attrs: { role: 'listbox', 'aria-label': 'Tokens', tabindex: 0 } });
  const tint = el('vscode-checkbox', { attrs: { label: 'Tint by surprisal' } }) as HTMLElement & { checked: boolean };
  tint.checked = ctx.store.state.surprisalTint;
  tint.addEventListener('change', () => ctx.store.set({ surprisalTint: tint.checked }));
  const legend = el('span', { class: 'strip-legend' });
  const root = el('section', { class: 'td-strip' }, [
    el('div', { class: 'strip-bar' }, [el('h3', { text: 'Tokens' }), el('span', { class: 'spacer' }), legend, tint]),
    list,
  ]);
  let spans: HTMLElement[] = [];
  let selected: HTMLElement | null = null;
  let highlighted: HTMLElement | null = null;

  // the analysis's tokens; not on the tabs that show other texts (Diff, Completions)
  const showOrHide = (s: Readonly<AppState>) => (root.hidden = !s.payload || !tabShowsAnalysis(s.tab));

  const build = (s: Readonly<AppState>) => {
    clear(list);
    spans = [];
    selected = highlighted = null;
    const p = s.payload;
    showOrHide(s);
    if (!p) return;
    const frag = document.createDocumentFragment();
    p.tokens.forEach((tok, i) => {
      const d = tokenDisplay(tok);
      const span = el('span', { class: `tok ${d.kind}`, text: d.text, attrs: { role: 'option', 'data-pos': i } });
      if (tok.text.includes('\n')) span.classList.add('nl');
      spans.push(span);
      frag.append(span);
    });
    list.append(frag);
  };

  const paintTint = (s: Readonly<AppState>) => {
    const p = s.payload;
    if (!p) return;
    const cmp = comparison(s.whatIf, p);
    if (cmp?.mode === 'difference') return paintDelta(s, cmp);
    legend.textContent = s.surprisalTint ? 'low → high surprisal' : '';
    const pal = ctx.palette();
    const maxBits = Math.log2(Math.max(2, p.model.d_vocab));
    const fills: string[] = [];
    const inks: string[] = [];
    for (let i = 0; i < STEPS; i++) {
      const f: Rgba = mix(pal.bg, pal.red, (0.85 * i) / (STEPS - 1), pal.bg);
      fills.push(toCss(f));
      inks.push(toCss(readableOn(f, [pal.fg, pal.bg])));
    }
    spans.forEach((span, i) => {
      const bits = surprisalBits(p.lens, i - 1);
      if (!s.surprisalTint || bits === null) {
        span.style.backgroundColor = '';
        span.style.color = '';
        return;
      }
      const k = rampIndex(bits / maxBits, STEPS);
      span.style.backgroundColor = fills[k]!;
      span.style.color = inks[k]!;
    });
  };

  /** What-if difference: each token tinted by its surprisal ablated − clean (red: more surprising). */
  const paintDelta = (s: Readonly<AppState>, cmp: Comparison) => {
    legend.textContent = s.surprisalTint ? `surprisal ${pairDelta(cmp)}: less ← → more` : '';
    const pal = ctx.palette();
    const half = STEPS / 2;
    const fills = Array.from({ length: STEPS + 1 }, (_, i) => {
      const t = (i - half) / half;
      return mix(pal.bg, t < 0 ? pal.blue : pal.red, 0.85 * Math.abs(t), pal.bg);
    });
    spans.forEach((span, i) => {
      const k = i === 0 ? null : divergingIndex(surprisalAt(cmp.intervened, i - 1) - surprisalAt(cmp.clean, i - 1), DELTA_BITS, half);
      if (!s.surprisalTint || k === null) {
        span.style.backgroundColor = '';
        span.style.color = '';
        return;
      }
      span.style.backgroundColor = toCss(fills[k]!);
      span.style.color = toCss(readableOn(fills[k]!, [pal.fg, pal.bg]));
    });
  };

  const paintSelection = (s: Readonly<AppState>) => {
    selected?.classList.remove('sel');
    selected?.setAttribute('aria-selected', 'false');
    highlighted?.classList.remove('hl');
    selected = spans[s.selectedPos] ?? null;
    highlighted = s.highlightPos === null ? null : (spans[s.highlightPos] ?? null);
    selected?.classList.add('sel');
    selected?.setAttribute('aria-selected', 'true');
    highlighted?.classList.add('hl');
    if (selected) scrollIntoView(list, selected);
  };

  list.addEventListener('click', (ev) => {
    const t = (ev.target as HTMLElement).closest<HTMLElement>('.tok');
    if (t?.dataset.pos) ctx.select(Number(t.dataset.pos));
  });
  list.addEventListener('mouseover', (ev) => {
    const t = (ev.target as HTMLElement).closest<HTMLElement>('.tok');
    const p = ctx.store.state.payload;
    if (!t?.dataset.pos || !p) return;
    const i = Number(t.dataset.pos);
    const tok = p.tokens[i]!;
    const d = tokenDisplay(tok);
    const bits = surprisalBits(p.lens, i - 1);
    const rows: Node[] = [
      el('div', { class: 'tt-title' }, [
        el('span', { class: 'mono', text: d.text }),
        el('span', { class: 'muted', text: `  pos ${i} · id ${tok.id}` }),
      ]),
      el('div', { class: 'muted', text: d.title }),
    ];
    const whole = d.kind === 'bytes' ? splitCharacter(p.text, tok) : null;
    if (whole) rows.push(el('div', { text: `in the text: ${whole}` }));
    if (bits !== null) rows.push(el('div', { text: `surprisal ${fmt(bits)} bits (p ${pct(2 ** -bits)} given the tokens before)` }));
    const cmp = comparison(ctx.store.state.whatIf, p);
    if (cmp && i > 0) {
      const a = surprisalAt(cmp.clean, i - 1);
      const b = surprisalAt(cmp.intervened, i - 1);
      const n = pairNames(cmp);
      rows.push(el('div', { text: `${n.base} ${fmt(a)} bits → ${n.twin} ${fmt(b)} bits (Δ ${b - a >= 0 ? '+' : ''}${fmt(b - a)})` }));
    }
    if (tok.special) rows.push(el('div', { class: 'muted', text: 'special token (not in the text)' }));
    const r = t.getBoundingClientRect();
    ctx.tooltip.show(r.left, r.bottom, rows);
  });
  list.addEventListener('mouseleave', () => ctx.tooltip.hide());

  ctx.store.subscribe((s, changed) => {
    if (changed.has('payload')) build(s);
    else if (changed.has('tab') && !showOrHide(s)) paintSelection(s); // shown again: the selection in view
    if (changed.has('payload') || changed.has('surprisalTint') || changed.has('themeVersion') || changed.has('whatIf')) paintTint(s);
    if (changed.has('payload') || changed.has('selectedPos') || changed.has('highlightPos')) paintSelection(s);
  });
  build(ctx.store.state);
  return root;
}

/** Scrolls a container just enough to show a child (no page scroll, unlike scrollIntoView). */
function scrollIntoView(container: HTMLElement, child: HTMLElement): void {
  const top = child.offsetTop; // the container is position: relative
  const bottom = top + child.offsetHeight;
  if (top < container.scrollTop) container.scrollTop = top - 2;
  else if (bottom > container.scrollTop + container.clientHeight) container.scrollTop = bottom - container.clientHeight + 2;
}
