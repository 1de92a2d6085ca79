// Payloads for the dev harness: a real analysis of stories260K (or the tiny-llama fixture),
// a synthetic 1024-token × 33-row one for scrolling and timing, and one full of hostile token
// text. Written as JSON with typed arrays encoded as {"$typed": "Float32Array", "b64": …}.
/* global structuredClone */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';

const require = createRequire(import.meta.url);

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
/**
 * Builds what the harness serves and what makes its payloads: the webview bundle (esbuild) and
 * the engine in out/ (tsc). Exits the process when either fails.
 */
export function buildForDev() {
  for (const cmd of [['esbuild.mjs'], [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.test.json']]) {
    const b = spawnSync(process.execPath, cmd, { cwd: ROOT, stdio: 'inherit' });
    if (b.status !== 0) process.exit(1);
  }
}

const STORIES = path.join(ROOT, 'test', 'fixtures', 'stories260K'); // vendored (its SOURCE.md)

const TYPED = { Float32Array, Int32Array, Uint8Array, Float64Array };

/** JSON.stringify replacer/reviver pair that keeps typed arrays (and the NaNs inside them). */
export function encodeTyped(value) {
  return JSON.stringify(value, (_k, v) => {
    for (const [name, T] of Object.entries(TYPED)) {
      if (v instanceof T) return { $typed: name, b64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
    }
    return v;
  });
}

export function decodeTyped(text) {
  return JSON.parse(text, (_k, v) => {
    if (v && typeof v === 'object' && typeof v.$typed === 'string' && typeof v.b64 === 'string') {
      const buf = Buffer.from(v.b64, 'base64');
      const T = TYPED[v.$typed];
      return new T(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    }
    return v;
  });
}

function engine() {
  const need = ['out/src/engine/model.js', 'out/src/engine/analyze.js', 'out/src/shared/payload.js', 'out/tools/convert/llama2c.js'];
  for (const f of need) {
    if (!fs.existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing: run \`npx tsc -p tsconfig.test.json\` first.`);
  }
  return {
    loadModel: require(path.join(ROOT, 'out/src/engine/model.js')).loadModel,
    analyze: require(path.join(ROOT, 'out/src/engine/analyze.js')).analyze,
    analysisToPayload: require(path.join(ROOT, 'out/src/shared/payload.js')).analysisToPayload,
    similarityMatrix: require(path.join(ROOT, 'out/src/engine/analysis/walk.js')).similarityMatrix,
  };
}

/** The model folder: stories260K converted to /tmp (once), or the tiny-llama fixture. */
export function modelDir() {
  const bin = path.join(STORIES, 'stories260K.bin');
  const tok = path.join(STORIES, 'tok512.bin');
  if (fs.existsSync(bin) && fs.existsSync(tok)) {
    const out = '/tmp/stories260K';
    if (!fs.existsSync(path.join(out, 'config.json')))
      require(path.join(ROOT, 'out/tools/convert/llama2c.js')).convertLlama2c(bin, tok, out);
    return { dir: out, name: 'stories260K' };
  }
  return { dir: path.join(ROOT, 'test', 'fixtures', 'models', 'tiny-llama'), name: 'tiny-llama' };
}

export const SAMPLE_TEXT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ' +
  'One day, she saw a big red ball. "Can I play with the ball?" she asked her mom. ' +
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ' +
  'The end.\nThen they went home and had a nap in the sun, and the dog slept too.';

/** A real analysis, capped so the truncation notice shows, plus every row's similarity matrix. */
export async function realPayload({ maxTokens = 120 } = {}) {
  const e = engine();
  const { dir, name } = modelDir();
  const model = await e.loadModel(dir, { threads: 2, executionProvider: 'cpu', name });
  try {
    const a = await e.analyze(model, { text: SAMPLE_TEXT, topK: 10, maxTokens, patterns: false });
    const c = a.cache;
    const shape = { rows: c.n_layers + 1, pos: c.pos, d: c.d_model };
    const similarity = {};
    for (let r = 0; r < shape.rows; r++) similarity[r] = e.similarityMatrix(c.resid, shape, r);
    return { payload: e.analysisToPayload(a, 1, { uri: 'untitled:story.txt', fileName: 'story.txt', offset: 0 }), similarity };
  } finally {
    await model.release();
  }
}

/** mulberry32: a small seeded PRNG so the synthetic payload is the same every run. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-layer, 1024-token payload with plausible shapes (values are made up). */
export function syntheticPayload(T = 1024, nLayers = 32, k = 10) {
  const rand = rng(7);
  const rows = nLayers + 1;
  const words = ' the a cat dog sat on mat and ran to park . , was big red ball Lily Tom saw said " \n it he she'
    .split(' ')
    .map((w, i) => (i === 0 ? ' ' : ' ' + w));
  words.push('\n', 'ing', 'ed', '\ufffd', '<0x0A>');
  const V = 32000;
  const vocab = {};
  words.forEach((w, i) => (vocab[i + 3] = w));
  vocab[1] = '<s>';
  const phrase = [5, 6, 7, 8, 9, 10];
  const ids = [1];
  while (ids.length < T) {
    if (rand() < 0.08) ids.push(...phrase);
    else ids.push(3 + Math.floor(rand() * words.length));
  }
  ids.length = T;
  const tokens = ids.map((id, p) => ({ id, text: vocab[id], start: p, end: p === 0 ? 0 : p + 1, special: id === 1 }));
  const n = rows * T;
  const topIds = new Int32Array(n * k);
  const topProbs = new Float32Array(n * k);
  const entropy = new Float32Array(n);
  const nextLogprob = new Float32Array(n);
  const nextRank = new Int32Array(n);
  const klToFinal = new Float32Array(n);
  const copyMass = new Float32Array(n);
  const cosNext = new Float32Array(n);
  const cosPred = new Float32Array(n);
  const norms = new Float32Array(n);
  const cosToFinal = new Float32Array(n);
  const coords = new Float32Array(n * 3);
  for (let r = 0; r < rows; r++) {
    const depth = r / nLayers;
    for (let p = 0; p < T; p++) {
      const i = r * T + p;
      const next = ids[p + 1];
      const hit = next !== undefined && rand() < depth * 0.8;
      let mass = 1;
      for (let j = 0; j < k; j++) {
        topIds[i * k + j] = j === 0 && hit ? next : 3 + Math.floor(rand() * words.length);
        const pr = (j === 0 ? 0.1 + 0.8 * depth * rand() : mass * 0.3 * rand()) * mass;
        topProbs[i * k + j] = pr;
        mass -= pr;
      }
      entropy[i] = Math.log(V) * (1 - depth * 0.8) * (0.6 + 0.4 * rand());
      nextRank[i] = next === undefined ? -1 : hit ? 0 : Math.floor(Math.exp(rand() * Math.log(V) * (1 - depth)));
      nextLogprob[i] = next === undefined ? NaN : Math.log(hit ? topProbs[i * k] : 1e-4 + rand() * 0.05);
      klToFinal[i] = r === nLayers ? 0 : 8 * (1 - depth) ** 2 * (0.5 + rand());
      copyMass[i] = Math.min(1, depth * rand() * 1.2);
      cosNext[i] = next === undefined ? NaN : depth * 0.4 + rand() * 0.1;
      cosPred[i] = depth * 0.5 + rand() * 0.1;
      norms[i] = 2 + 40 * depth ** 2 + rand();
      cosToFinal[i] = depth + (1 - depth) * rand() * 0.3;
      const prev = r === 0 ? null : ((r - 1) * T + p) * 3;
      for (let d = 0; d < 3; d++)
        coords[i * 3 + d] = prev === null ? (ids[p] % 7) - 3 + rand() : coords[prev + d] + (rand() - 0.5) * (d === 0 ? 1 + depth : 1);
    }
  }
  for (const id of topIds) vocab[id] ??= `tok${id}`;
  const similarity = {};
  const sim = (row) => {
    const m = new Float32Array(T * T);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j <= i; j++) {
        const a = (row * T + i) * 3;
        const b = (row * T + j) * 3;
        let dot = 0;
        let na = 0;
        let nb = 0;
        for (let d = 0; d < 3; d++) {
          dot += coords[a + d] * coords[b + d];
          na += coords[a + d] ** 2;
          nb += coords[b + d] ** 2;
        }
        const v = dot / (Math.sqrt(na * nb) || 1);
        m[i * T + j] = v;
        m[j * T + i] = v;
      }
    }
    return m;
  };
  similarity[nLayers] = sim(nLayers);
  const ngrams = [{ n: phrase.length, ids: phrase, positions: [] }];
  for (let p = 0; p + phrase.length <= T; p++) if (phrase.every((id, j) => ids[p + j] === id)) ngrams[0].positions.push(p);
  const payload = {
    runId: 7,
    model: {
      name: 'synthetic-7B',
      architecture: 'llama',
      family: 'llama',
      n_layers: nLayers,
      d_model: 4096,
      d_vocab: V,
      n_heads: 32,
      n_kv_heads: 8,
      d_head: 128,
      max_positions: 4096,
      params: 6.7e9,
      tied_embeddings: false,
    },
    dims: { n_layers: nLayers, pos: T, d_model: 4096, n_heads: 32 },
    source: null,
    text: tokens.map((t) => t.text).join(''),
    tokens,
    truncation: { kept: T, total: 1500 },
    lens: { rows, pos: T, k, topIds, topProbs, entropy, nextLogprob, nextRank, klToFinal, copyMass, cosNext, cosPred },
    walk: {
      norms,
      normsFinal: norms.map((_, i) => 8 + (i % 7) * 0.01),
      stepSize: new Float32Array(nLayers * T),
      stepCos: new Float32Array(nLayers * T),
      cosToFinal,
      pca: { coords, explained: [0.41, 0.17, 0.08] },
      similarity: { row: nLayers, matrix: similarity[nLayers] },
      ngrams,
    },
    vocab,
    lastLogitsTop: [{ id: 5, prob: 0.4 }],
    timings: { tokenizeMs: 3, forwardMs: 2100, lensMs: 900, metricsMs: 300, totalMs: 3303 },
  };
  return { payload, similarity, coordsSimilarity: true };
}

/** Hostile strings a model's vocabulary could contain. */
export const HOSTILE = [
  '<script>window.__pwned=1</script>',
  '<img src=x onerror="window.__pwned=2">',
  '</script><script>window.__pwned=3</script>',
  'javascript:window.__pwned=4',
  '<a href="javascript:window.__pwned=5">click</a>',
  '\u202eevil\u202c',
  '\u2066iso\u2069',
  'nul\u0000here',
  '&amp; &lt;b&gt;',
  '%{x} %{hovertext}',
  '<b>bold</b><br>',
  '$x^2$',
];

/** The real payload with token texts and lens vocabulary replaced by hostile strings. */
export function hostilePayload(real) {
  const p = structuredClone(real.payload);
  p.runId = 66;
  p.model.name = '<img src=x onerror="window.__pwned=6">model';
  p.tokens.forEach((t, i) => {
    if (i > 0 && i % 3 === 0) t.text = HOSTILE[(i / 3) % HOSTILE.length];
  });
  for (const id of Object.keys(p.vocab)) p.vocab[id] = HOSTILE[Number(id) % HOSTILE.length];
  p.text = p.tokens.map((t) => t.text).join('');
  return { payload: p, similarity: real.similarity };
}

/** Writes a payload bundle as typed-array-aware JSON (the server wraps it in a script). */
export function writeBundle(file, bundle) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, encodeTyped(bundle));
}
