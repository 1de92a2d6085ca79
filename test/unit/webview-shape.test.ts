// The panel's pure data shaping (webview/shape*.ts) on hand-made inputs with known answers.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { LensTable, Token, WalkMetrics } from '../../src/shared/analysis';
import {
  clip,
  duration,
  escapePlotly,
  escapeXml,
  fmt,
  pct,
  plotlyToken,
  rowLabel,
  rowTitle,
  splitCharacter,
  tokenDisplay,
  visibleText,
} from '../../webview/shapeText';
import { contrast, mix, parseColor, plotlyColorscale, rampIndex, readableOn, toCss, type Rgba } from '../../webview/shapeColor';
import {
  cellSummary,
  isLensColorMode,
  isNextMatch,
  lensCellInfo,
  lensScale,
  lensTableSvg,
  modeValue,
  nextTokenId,
  scaleT,
  surprisalBits,
  visibleRange,
  type LensSource,
} from '../../webview/shapeLens';
import { allPaths, layerSeries, manyPoints, pathHover, pcAxisTitle, tokenPath } from '../../webview/shapeTrajectory';
import {
  copyMassSeries,
  isSimilarityMatrix,
  lowerTriangle,
  offDiagonalRange,
  rectOutlines,
  repeatRuns,
  repeatedSpans,
  runRect,
} from '../../webview/shapeRepetition';
import { RequestError, RequestTracker, isResult, type Timers } from '../../webview/shapeRequests';
import {
  DEFAULT_STATE,
  initialPosition,
  initialSimilarityRow,
  readPersisted,
  stepPosition,
  tabForAnalysis,
  tabShowsAnalysis,
} from '../../webview/shapeState';
import { imageName, svgDataUrl, svgFromDataUrl } from '../../webview/shapeExport';
import { payloadProblems } from '../../webview/shapePayload';
import type { AnalysisPayload } from '../../src/shared/protocol';

/** Strings a hostile vocabulary could contain. */
const HOSTILE = [
  '<script>alert(1)</script>',
  '<img src=x onerror=alert(1)>',
  '</script>',
  'javascript:alert(1)',
  '<a href="javascript:alert(1)">x</a>',
  '\u202eevil\u202c',
  '\u2066iso\u2069',
  'nul\u0000here',
  '&amp; &lt;',
  '<br><b>x</b>',
];

/** No markup can survive: no raw < or >, and every & starts one of our entities. */
function assertInert(s: string, what: string): void {
  assert.ok(!/[<>]/.test(s), `${what}: raw angle bracket in ${JSON.stringify(s)}`);
  assert.ok(!/&(?!amp;|lt;|gt;|quot;|#39;)/.test(s), `${what}: bare & in ${JSON.stringify(s)}`);
}

describe('webview text: visible whitespace and escaping', () => {
  test('whitespace becomes visible, CRLF is one ↵', () => {
    assert.equal(visibleText(' a\n\tb\r\nc\rd\u00a0'), '·a↵→b↵c␍d⍽');
  });

  test('control, bidi and zero-width characters become escapes', () => {
    assert.equal(visibleText('a\u0000b\u007f\u0085'), 'a\\x00b\\x7F\\x85');
    assert.equal(visibleText('\u202eevil\u202c'), '\\u202Eevil\\u202C');
    assert.equal(visibleText('\u2066x\u2069\u200e\u200f\u061c'), '\\u2066x\\u2069\\u200E\\u200F\\u061C');
    assert.equal(visibleText('a\u200bb\ufeff'), 'a\\u200Bb\\uFEFF');
    assert.ok(!/[\u202a-\u202e\u2066-\u2069]/.test(visibleText(HOSTILE.join(''))));
  });

  test('ordinary text, emoji and other scripts are left alone', () => {
    assert.equal(visibleText('héllo🙂שלום'), 'héllo🙂שלום');
  });

  test('escapePlotly neutralises markup Plotly would render', () => {
    assert.equal(escapePlotly('<a href="javascript:x">&</a>'), '&lt;a href="javascript:x"&gt;&amp;&lt;/a&gt;');
    assert.equal(escapePlotly('&lt;'), '&amp;lt;');
    for (const h of HOSTILE) assertInert(escapePlotly(h), 'escapePlotly');
    for (const h of HOSTILE) assertInert(plotlyToken(h, 200), 'plotlyToken');
  });

  test('escapeXml also escapes quotes for attributes', () => {
    assert.equal(escapeXml(`"a" & 'b' <c>`), '&quot;a&quot; &amp; &#39;b&#39; &lt;c&gt;');
  });

  test('clip never splits a surrogate pair', () => {
    assert.equal(clip('abcdef', 4), 'abc…');
    assert.equal(clip('ab🙂cd', 4), 'ab…');
    assert.equal(clip('abc', 4), 'abc');
  });

  test('tokenDisplay marks special, byte-fallback and empty tokens', () => {
    assert.deepEqual({ ...tokenDisplay({ text: '<s>', special: true }), title: '' }, { text: '<s>', kind: 'special', title: '' });
    const bytes = tokenDisplay({ text: ' <0xE6><0x97>' });
    assert.equal(bytes.kind, 'bytes');
    assert.equal(bytes.text, '·<0xE6><0x97>');
    assert.equal(bytes.title, '" <0xE6><0x97>": bytes E6 97 of a character split across tokens (a byte piece)');
    assert.match(tokenDisplay({ text: '<0xA5>' }).title, /: byte A5 of a character/);
    // an analysis exported before the engine named the bytes
    assert.equal(tokenDisplay({ text: '\ufffd' }).kind, 'bytes');
    assert.equal(tokenDisplay({ text: '<0xe6>' }).kind, 'normal'); // not the engine's spelling
    // the character a byte piece is part of, from the piece's span in the analysed text
    assert.equal(splitCharacter('a 🙂 b', { start: 2, end: 4 }), '"🙂" U+1F642');
    assert.equal(splitCharacter('x 日本', { start: 1, end: 3 }), '"·日" U+65E5');
    assert.equal(splitCharacter('<s>', { start: 0, end: 0 }), null);
    assert.equal(tokenDisplay({ text: '' }).kind, 'empty');
    assert.equal(tokenDisplay({ text: '' }).text, '∅');
    const n = tokenDisplay({ text: ' the' });
    assert.deepEqual([n.kind, n.text, n.title], ['normal', '·the', '" the"']);
    assert.equal(tokenDisplay({ text: '\u202ex' }).title, '"\\u202ex"');
  });

  test('row labels and number formats', () => {
    assert.deepEqual([rowLabel(0), rowLabel(1), rowLabel(33)], ['emb', 'L0', 'L32']);
    assert.equal(rowTitle(0, 6), 'embeddings (resid_pre 0)');
    assert.equal(rowTitle(5, 6), 'layer 4 (output)');
    assert.equal(rowTitle(2, 6), 'layer 1');
    assert.equal(fmt(0.123456), '0.123');
    assert.equal(fmt(NaN), '–');
    assert.equal(fmt(0.0001234), '1.2e-4');
    assert.deepEqual([pct(0.5), pct(0.05), pct(0.0005), pct(1e-7)], ['50%', '5.0%', '0.05%', '1e-5%']);
    assert.deepEqual([duration(850.4), duration(2400), duration(12345)], ['850 ms', '2.40 s', '12.3 s']);
  });
});

describe('webview colours', () => {
  test('parseColor reads hex and rgb forms', () => {
    assert.deepEqual(parseColor('#abc'), [170, 187, 204, 1]);
    assert.deepEqual(parseColor('#AABBCC80'), [170, 187, 204, 128 / 255]);
    assert.deepEqual(parseColor('rgb(1, 2, 3)'), [1, 2, 3, 1]);
    assert.deepEqual(parseColor('rgba(1,2,3,0.5)'), [1, 2, 3, 0.5]);
    assert.deepEqual(parseColor('rgb(1 2 3 / 50%)'), [1, 2, 3, 0.5]);
    assert.equal(parseColor('var(--x)'), null);
    assert.equal(parseColor('#12'), null);
  });

  test('mix, composite and css output', () => {
    const black: Rgba = [0, 0, 0, 1];
    const white: Rgba = [255, 255, 255, 1];
    assert.deepEqual(mix(black, white, 0.5), [127.5, 127.5, 127.5, 1]);
    assert.deepEqual(mix([255, 0, 0, 0.5], white, 0, black), [127.5, 0, 0, 1]);
    assert.equal(toCss([1.4, 2.6, 300, 1]), 'rgb(1, 3, 255)');
    assert.equal(toCss([0, 0, 0, 0.25]), 'rgba(0, 0, 0, 0.25)');
  });

  test('readable text picks the colour with more contrast', () => {
    const black: Rgba = [0, 0, 0, 1];
    const white: Rgba = [255, 255, 255, 1];
    assert.equal(Math.round(contrast(black, white)), 21);
    assert.deepEqual(readableOn([240, 240, 240, 1], [white, black]), black);
    assert.deepEqual(readableOn([20, 20, 60, 1], [black, white]), white);
  });

  test('ramp indices and Plotly colour scales', () => {
    assert.deepEqual([rampIndex(0, 10), rampIndex(1, 10), rampIndex(0.5, 11), rampIndex(NaN, 10), rampIndex(7, 10)], [0, 9, 5, 0, 9]);
    assert.deepEqual(
      plotlyColorscale([
        [0, 0, 0, 1],
        [255, 255, 255, 1],
      ]),
      [
        [0, 'rgb(0, 0, 0)'],
        [1, 'rgb(255, 255, 255)'],
      ],
    );
  });
});

/** A 2-row (emb + one layer), 3-position lens with k = 2 and known values. */
function tinyLens(): LensSource {
  const lens: LensTable = {
    rows: 2,
    pos: 3,
    k: 2,
    // [rows, pos, k]
    topIds: Int32Array.from([10, 11, 20, 21, 30, 31, /* row 1 */ 20, 12, 30, 22, 40, 32]),
    topProbs: Float32Array.from([0.5, 0.2, 0.4, 0.3, 0.9, 0.05, /* row 1 */ 0.7, 0.1, 0.6, 0.2, 0.8, 0.1]),
    entropy: Float32Array.from([2, 1.5, 0.5, 1, 0.8, 0.2]),
    nextLogprob: Float32Array.from([Math.log(0.1), Math.log(0.05), NaN, Math.log(0.7), Math.log(0.6), NaN]),
    nextRank: Int32Array.from([4, 99, -1, 0, 0, -1]),
    klToFinal: Float32Array.from([3, 1, 0.5, 0, 0, 0]),
    copyMass: Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
    cosNext: Float32Array.from([0.1, 0.2, NaN, 0.5, 0.6, NaN]),
    cosPred: Float32Array.from([0.3, 0.3, 0.3, 0.9, 0.9, 0.9]),
  };
  const tokens: Token[] = [
    { id: 1, text: '<s>', start: 0, end: 0, special: true },
    { id: 20, text: ' cat', start: 0, end: 4, special: false },
    { id: 30, text: ' sat', start: 4, end: 8, special: false },
  ];
  const vocab: Record<number, string> = {
    1: '<s>',
    10: 'a',
    11: 'b',
    12: 'c',
    20: ' cat',
    21: 'x',
    22: 'y',
    30: ' sat',
    31: 'z',
    32: 'w',
    40: '<img src=x onerror=alert(1)>',
  };
  return { lens, tokens, vocab, model: { d_vocab: 1000 } };
}

describe('webview logit-lens shaping', () => {
  test('values per colour mode', () => {
    const { lens } = tinyLens();
    assert.ok(Math.abs(modeValue(lens, 'prob', 1, 0)! - 0.7) < 1e-6);
    assert.equal(modeValue(lens, 'rank', 0, 1), 99);
    assert.equal(modeValue(lens, 'rank', 1, 2), null, 'no next token at the last position');
    assert.equal(modeValue(lens, 'entropy', 0, 0), 2);
    assert.equal(modeValue(lens, 'kl', 0, 0), 3);
    assert.ok(isLensColorMode('kl') && !isLensColorMode('rainbow'));
  });

  test('the next token and top-1 matches', () => {
    const src = tinyLens();
    assert.equal(nextTokenId(src.tokens, 0), 20);
    assert.equal(nextTokenId(src.tokens, 2), null);
    assert.equal(isNextMatch(src, 1, 0), true);
    assert.equal(isNextMatch(src, 1, 1), true);
    assert.equal(isNextMatch(src, 0, 0), false);
    assert.equal(isNextMatch(src, 1, 2), false, 'the last position has no next token');
  });

  test('scales map values onto 0..1', () => {
    const { lens } = tinyLens();
    const prob = lensScale('prob', lens, 1000);
    assert.equal(scaleT(prob, 0.25), 0.25);
    assert.equal(scaleT(prob, null), null);
    assert.deepEqual(
      prob.ticks.map((t) => t.label),
      ['0%', '25%', '50%', '75%', '100%'],
    );
    const rank = lensScale('rank', lens, 1000);
    assert.equal(scaleT(rank, 0), 1, 'rank 0 (top-1) is the strong end');
    assert.equal(scaleT(rank, 999), 0);
    assert.ok(Math.abs(scaleT(rank, 9)! - (1 - Math.log(10) / Math.log(1000))) < 1e-9, 'log scale');
    assert.deepEqual(
      rank.ticks.map((t) => t.label),
      ['#1000', '#100', '#10', '#1'],
    );
    const ent = lensScale('entropy', lens, 1000);
    assert.ok(Math.abs(scaleT(ent, Math.log(1000))! - 1) < 1e-9);
    const kl = lensScale('kl', lens, 1000);
    assert.equal(kl.max, 3);
    assert.equal(scaleT(kl, 3), 1);
    assert.equal(scaleT(kl, 0), 0);
    assert.ok(Math.abs(scaleT(kl, 1)! - Math.log(2) / Math.log(4)) < 1e-9);
    assert.equal(kl.ticks[0]!.t, 0);
    assert.equal(kl.ticks.at(-1)!.t, 1);
  });

  test('cell details: top-k, 1-based rank, probability of the next token', () => {
    const src = tinyLens();
    const info = lensCellInfo(src, 0, 0, 10);
    assert.equal(info.top.length, 2);
    assert.deepEqual(
      info.top.map((t) => t.text.text),
      ['a', 'b'],
    );
    assert.equal(info.nextRank, 5);
    assert.ok(Math.abs(info.nextProb! - 0.1) < 1e-6);
    assert.equal(info.next!.text, '·cat');
    assert.equal(info.input.kind, 'special');
    assert.equal(cellSummary(info), 'H 2 nats · KL 3 · next #5 (10.0%)');
    const last = lensCellInfo(src, 1, 2, 1);
    assert.equal(last.top.length, 1, 'top-k is capped by the setting');
    assert.equal(last.next, null);
    assert.equal(last.nextRank, null);
    assert.equal(lensCellInfo(src, 1, 0, 5).top[0]!.isNext, true);
  });

  test('surprisal in bits from the output row', () => {
    const { lens } = tinyLens();
    assert.ok(Math.abs(surprisalBits(lens, 0)! - -Math.log2(0.7)) < 1e-6);
    assert.equal(surprisalBits(lens, 2), null);
    assert.equal(surprisalBits(lens, -1), null);
  });

  test('the visible window of a virtualised axis', () => {
    assert.deepEqual(visibleRange(0, 200, 50, 100, 0), [0, 4]);
    assert.deepEqual(visibleRange(0, 200, 50, 100), [0, 6]);
    assert.deepEqual(visibleRange(1000, 200, 50, 100, 1), [19, 25]);
    assert.deepEqual(visibleRange(4900, 200, 50, 100, 2), [96, 100]);
    assert.deepEqual(visibleRange(0, 200, 50, 0), [0, 0]);
  });

  test('the table as SVG escapes every string and marks matches', () => {
    const src = tinyLens();
    const svg = lensTableSvg(src, 'prob', {
      background: '#000',
      foreground: '#fff',
      muted: '#888',
      border: '#333',
      fontFamily: 'mono"<x>',
      cell: (t) => ({ fill: t === null ? 'none' : `rgb(0,0,${Math.round(t * 255)})`, text: '#fff' }),
    });
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
    assert.ok(!svg.includes('<img') && svg.includes('&lt;img'), 'hostile vocabulary is escaped');
    assert.ok(svg.includes('font-family="mono&quot;&lt;x&gt;"'));
    assert.equal((svg.match(/font-weight="bold"/g) ?? []).length, 2, 'two top-1 = next cells');
    assert.equal((svg.match(/<rect x=/g) ?? []).length, 6);
  });
});

describe('webview trajectories shaping', () => {
  // coords [rows=2, pos=3, 3]: position p at row r = (p, r, p + r)
  const coords = Float32Array.from([0, 0, 0, 1, 0, 1, 2, 0, 2, /* row 1 */ 0, 1, 1, 1, 1, 2, 2, 1, 3]);

  test('one token path and all paths NaN-separated', () => {
    const sel = tokenPath(coords, 2, 3, 1);
    assert.deepEqual(sel.x, [1, 1]);
    assert.deepEqual(sel.y, [0, 1]);
    assert.deepEqual(sel.z, [1, 2]);
    assert.deepEqual(sel.row, [0, 1]);
    assert.deepEqual(tokenPath(coords, 2, 3, 5).x, []);
    const others = allPaths(coords, 2, 3, 1);
    assert.deepEqual(others.x, [0, 0, NaN, 2, 2]);
    assert.deepEqual(others.pos, [0, 0, -1, 2, 2]);
    assert.deepEqual(others.row, [0, 1, -1, 0, 1]);
    assert.equal(allPaths(coords, 2, 3).x.length, 3 * 2 + 2);
  });

  test('axis titles carry explained variance', () => {
    assert.equal(pcAxisTitle(0, [0.413, 0.2]), 'PC1 (41.3%)');
    assert.equal(pcAxisTitle(2, [0.413, 0.2]), 'PC3');
  });

  test('hover text is escaped and names layer, token and lens top-1', () => {
    const src = tinyLens();
    const hover = pathHover(tokenPath(coords, 2, 3, 2), src.tokens, src.lens, src.vocab);
    assert.equal(hover.length, 2);
    assert.match(hover[1]!, /layer 0 \(output\)/);
    assert.match(hover[1]!, /lens top-1: &lt;img·src=x·onerror=aler… \(80%\)/);
    assert.ok(!hover[1]!.includes('<img'));
    const others = pathHover(allPaths(coords, 2, 3, 2), src.tokens, src.lens, src.vocab);
    assert.equal(others[2], '', 'separators have no hover');
    assert.match(others[0]!, /<b>&lt;s&gt;<\/b> · pos 0/);
  });

  test('per-layer series for one token', () => {
    const src = tinyLens();
    const walk = {
      norms: Float32Array.from([1, 2, 3, 4, 5, 6]),
      cosToFinal: Float32Array.from([0.5, 0.5, 0.5, 1, 1, 1]),
    } as unknown as WalkMetrics;
    const ls = layerSeries(walk, src.lens, 2);
    assert.deepEqual(ls.x, ['emb', 'L0']);
    assert.deepEqual(ls.norm, [3, 6]);
    assert.equal(ls.normFinal, null, 'no ‖ln_final(x)‖ in this run');
    const withFinal = layerSeries({ ...walk, normsFinal: Float32Array.from([7, 7, 7, 8, 8, 9]) }, src.lens, 2);
    assert.deepEqual(withFinal.normFinal, [7, 9]);
    assert.deepEqual(ls.cosNext, [null, null]);
    assert.equal(manyPoints(33, 1024), true);
    assert.equal(manyPoints(6, 120), false);
  });
});

describe('webview repetition shaping', () => {
  test('lower triangle with nulls above the diagonal', () => {
    const m = Float32Array.from([1, 0.5, 0.2, 0.5, 1, 0.4, 0.2, 0.4, 1]);
    assert.deepEqual(lowerTriangle(m, 3), [
      [1, null, null],
      [0.5, 1, null],
      [Math.fround(0.2), Math.fround(0.4), 1],
    ]);
    const [lo, hi] = offDiagonalRange(m, 3);
    assert.ok(Math.abs(lo - 0.2) < 1e-6 && Math.abs(hi - 0.5) < 1e-6);
    assert.deepEqual(offDiagonalRange(Float32Array.of(1), 1), [0, 1]);
    assert.ok(isSimilarityMatrix(m, 3) && !isSimilarityMatrix(m, 4) && !isSimilarityMatrix([1], 1));
  });

  test('overlapping repeated n-grams merge into one run per offset', () => {
    // a 10-token stretch at 0 repeats at 20: the engine lists the overlapping 8-grams at 0, 1, 2
    const ngrams = [0, 1, 2].map((p) => ({ n: 8, ids: [], positions: [p, p + 20] }));
    ngrams.push({ n: 2, ids: [], positions: [40, 45, 50] });
    ngrams.push({ n: 1, ids: [], positions: [60, 61] });
    const runs = repeatRuns(ngrams, 2);
    assert.deepEqual(runs, [
      { src: 0, dst: 20, len: 10 },
      { src: 40, dst: 45, len: 2 },
      { src: 40, dst: 50, len: 2 },
      { src: 45, dst: 50, len: 2 },
    ]);
    assert.equal(repeatRuns(ngrams, 1).length, 5);
    assert.equal(repeatRuns(ngrams, 2, 1).length, 1, 'limit');
    assert.deepEqual(runRect(runs[0]!), { x0: -0.5, x1: 9.5, y0: 19.5, y1: 29.5 });
    assert.deepEqual(repeatedSpans(runs), [
      [20, 30],
      [45, 47],
      [50, 52],
    ]);
  });

  test('rectangles as one broken polyline', () => {
    const o = rectOutlines([
      { x0: 0, x1: 1, y0: 2, y1: 3 },
      { x0: 5, x1: 6, y0: 7, y1: 8 },
    ]);
    assert.deepEqual(o.x, [0, 1, 1, 0, 0, null, 5, 6, 6, 5, 5]);
    assert.deepEqual(o.y, [2, 2, 3, 3, 2, null, 7, 7, 8, 8, 7]);
  });

  test('copy mass at a row, clamped', () => {
    const { lens } = tinyLens();
    assert.deepEqual(
      copyMassSeries(lens, 1).map((v) => Math.round(v * 10) / 10),
      [0.4, 0.5, 0.6],
    );
    assert.deepEqual(copyMassSeries(lens, 9).length, 3);
  });
});

describe('webview requests', () => {
  /** Manual timers: run() fires everything pending. */
  function fakeTimers(): Timers & { run(): void; pending: number } {
    const fns = new Map<number, () => void>();
    let next = 1;
    return {
      set(fn) {
        fns.set(next, fn);
        return next++;
      },
      clear(h) {
        fns.delete(h as number);
      },
      run() {
        for (const [k, fn] of [...fns]) {
          fns.delete(k);
          fn();
        }
      },
      get pending() {
        return fns.size;
      },
    };
  }

  test('ids, results and errors', async () => {
    const timers = fakeTimers();
    const t = new RequestTracker(timers);
    const sent: number[] = [];
    const a = t.start('exportAnalysis', (id) => sent.push(id));
    const b = t.start('similarity', (id) => sent.push(id));
    assert.deepEqual(sent, [1, 2]);
    assert.equal(t.size, 2);
    assert.equal(t.settle({ id: 1, ok: true, result: '/tmp/x.json' }), true);
    assert.equal(await a, '/tmp/x.json');
    assert.equal(t.settle({ id: 2, ok: false, error: 'no run' }), true);
    await assert.rejects(b, (e: unknown) => e instanceof RequestError && e.message === 'no run' && e.method === 'similarity');
    assert.equal(t.settle({ id: 2, ok: true, result: null }), false, 'a second answer is ignored');
    assert.equal(timers.pending, 0, 'timers cleared');
  });

  test('malformed results are rejected, not passed on', async () => {
    const t = new RequestTracker(fakeTimers());
    const p = t.start('similarity', () => undefined);
    t.settle({ id: 1, ok: true, result: [1, 2, 3] });
    await assert.rejects(p, /malformed/);
    assert.ok(isResult('similarity', new Float32Array(4)));
    assert.ok(isResult('saveImage', null) && isResult('saveImage', '/p') && !isResult('saveImage', 3));
  });

  test('timeouts reject and late answers are dropped', async () => {
    const timers = fakeTimers();
    const t = new RequestTracker(timers);
    const p = t.start('saveImage', () => undefined, 1000);
    timers.run();
    await assert.rejects(p, (e: unknown) => e instanceof RequestError && e.timedOut && /within 1 s/.test(e.message));
    assert.equal(t.settle({ id: 1, ok: true, result: null }), false);
  });

  test('cancelAll and a throwing send', async () => {
    const t = new RequestTracker(fakeTimers());
    const p = t.start('similarity', () => undefined);
    t.cancelAll('new run');
    await assert.rejects(p, /new run/);
    await assert.rejects(
      t.start('similarity', () => {
        throw new Error('post failed');
      }),
      /post failed/,
    );
    assert.equal(t.size, 0);
  });
});

describe('webview persisted state', () => {
  test('garbage gives defaults', () => {
    assert.deepEqual(readPersisted(undefined), DEFAULT_STATE);
    assert.deepEqual(readPersisted({ version: 2 }), DEFAULT_STATE);
  });

  test('valid fields are kept, wrong ones replaced', () => {
    const s = readPersisted({
      version: 1,
      text: 'hi',
      tab: 'repetition',
      selectedPos: 4,
      lensColor: 'nope',
      trajectoryDims: 3,
      similarityRow: 2,
      source: { uri: 1 },
    });
    assert.deepEqual(s, { ...DEFAULT_STATE, text: 'hi', tab: 'repetition', selectedPos: 4, trajectoryDims: 3, similarityRow: 2 });
  });

  test('positions and rows are clamped to the data', () => {
    assert.equal(initialPosition(-1, 10), 9);
    assert.equal(initialPosition(3, 10), 3);
    assert.equal(initialPosition(12, 10), 9);
    assert.deepEqual([stepPosition(0, -1, 5), stepPosition(4, 1, 5), stepPosition(2, 1, 5)], [0, 4, 3]);
    const p = { dims: { n_layers: 4, pos: 3, d_model: 8, n_heads: 2 }, walk: { similarity: { row: 4 } } } as Parameters<
      typeof initialSimilarityRow
    >[1];
    assert.equal(initialSimilarityRow(-1, p), 4);
    assert.equal(initialSimilarityRow(2, p), 2);
    assert.equal(initialSimilarityRow(5, p), 4);
  });

  test('a new analysis keeps a tab that shows it, and leaves Diff and Completions for the lens', () => {
    for (const tab of ['lens', 'trajectories', 'repetition', 'attention', 'proximity', 'ball', 'clusters'])
      assert.equal(tabForAnalysis(tab), tab);
    assert.equal(tabForAnalysis('diff'), 'lens');
    assert.equal(tabForAnalysis('completions'), 'lens');
    assert.deepEqual(
      ['lens', 'attention', 'diff', 'completions'].map(tabShowsAnalysis),
      [true, true, false, false],
      'the token strip is hidden on Diff and Completions',
    );
  });
});

describe('webview export helpers', () => {
  test('file names are safe', () => {
    assert.equal(imageName('logit-lens', 'Qwen/Qwen2.5 0.5B', 'prob'), 'logit-lens-Qwen_Qwen2.5_0.5B-prob');
    assert.equal(imageName('../../etc/passwd'), 'etc_passwd');
    assert.equal(imageName('<>'), 'chart');
  });

  test('SVG markup from Plotly data URLs', () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg"><text>é &amp; #</text></svg>';
    assert.equal(svgFromDataUrl(svgDataUrl(svg)), svg);
    assert.equal(svgFromDataUrl('data:image/svg+xml,' + encodeURIComponent(svg)), svg);
    assert.equal(svgFromDataUrl('data:image/svg+xml;base64,' + Buffer.from(svg).toString('base64')), svg);
    assert.throws(() => svgFromDataUrl('data:image/png;base64,AAAA'), /Not an SVG/);
  });
});

describe('webview payload consistency', () => {
  function payload(): AnalysisPayload {
    const src = tinyLens();
    const cells = 2 * 3;
    return {
      runId: 1,
      model: { name: 'tiny', d_vocab: 1000 } as AnalysisPayload['model'],
      dims: { n_layers: 1, pos: 3, d_model: 4, n_heads: 1 },
      source: null,
      text: ' cat sat',
      tokens: src.tokens,
      truncation: null,
      lens: src.lens,
      walk: {
        norms: new Float32Array(cells),
        normsFinal: new Float32Array(cells),
        stepSize: new Float32Array(3),
        stepCos: new Float32Array(3),
        cosToFinal: new Float32Array(cells),
        pca: { coords: new Float32Array(cells * 3), explained: [0.5, 0.3, 0.1] },
        similarity: { row: 1, matrix: new Float32Array(9) },
        ngrams: [{ n: 1, ids: [20], positions: [1, 2] }],
      },
      vocab: src.vocab,
      lastLogitsTop: [],
      timings: { tokenizeMs: 0, forwardMs: 0, lensMs: 0, metricsMs: 0, totalMs: 1 },
    };
  }

  test('a consistent payload has no problems', () => {
    assert.deepEqual(payloadProblems(payload()), []);
  });

  test('wrong lengths and out-of-range positions are reported', () => {
    const p = payload();
    p.walk.pca.coords = new Float32Array(5);
    p.walk.similarity.row = 7;
    p.walk.ngrams = [{ n: 2, ids: [], positions: [2] }];
    p.lens = { ...p.lens, entropy: new Float32Array(2) };
    assert.deepEqual(payloadProblems(p), [
      'lens.entropy should have 6 values',
      'walk.pca.coords should have 18 values',
      'walk.similarity.row is out of range',
      'walk.ngrams has positions outside the text',
    ]);
  });
});
