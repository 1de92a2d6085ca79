// A stand-in for VS Code inside the dev page: acquireVsCodeApi (once only, as in VS Code),
// the host's side of the protocol (ready → runState/settings/analysis; similarity, export and
// saveImage requests), state kept in sessionStorage, and a record of everything the panel sent.
/* global window, sessionStorage, atob, URLSearchParams, location */
(function () {
  'use strict';
  const TYPED = { Float32Array, Int32Array, Uint8Array, Float64Array };
  function revive(v) {
    if (Array.isArray(v)) return v.map(revive);
    if (v && typeof v === 'object') {
      if (typeof v.$typed === 'string' && typeof v.b64 === 'string') {
        const bin = atob(v.b64);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        return new TYPED[v.$typed](bytes.buffer);
      }
      const out = {};
      for (const k of Object.keys(v)) out[k] = revive(v[k]);
      return out;
    }
    return v;
  }

  const params = new URLSearchParams(location.search);
  const data = window.__TD_DEV_DATA__ ? revive(window.__TD_DEV_DATA__) : {};
  let payload = data.payload || null;
  const similarity = data.similarity || {};
  // Dynamics tabs: precomputed engine answers (tools/webview-dev/dynamics.mjs), absent in older payloads
  const dynamics = data.dynamics || null;
  const record = {
    posted: [],
    commands: [],
    saved: [],
    exports: [],
    selects: [],
    logs: [],
    similarity: [],
    // Completions tab
    generate: [],
    stops: [],
    inserts: [],
    analyses: [],
    patching: [],
  };
  window.__TD_RECORD__ = record;

  const toWebview = (m) => window.postMessage(m, '*');

  /** Cosines of the PCA coords at a row, for payloads without precomputed matrices. */
  function coordsSimilarity(row) {
    const T = payload.lens.pos;
    const c = payload.walk.pca.coords;
    const m = new Float32Array(T * T);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j <= i; j++) {
        const a = (row * T + i) * 3;
        const b = (row * T + j) * 3;
        let dot = 0;
        let na = 0;
        let nb = 0;
        for (let d = 0; d < 3; d++) {
          dot += c[a + d] * c[b + d];
          na += c[a + d] * c[a + d];
          nb += c[b + d] * c[b + d];
        }
        const v = dot / (Math.sqrt(na * nb) || 1);
        m[i * T + j] = v;
        m[j * T + i] = v;
      }
    }
    return m;
  }

  function answer(req) {
    const reply = (result) => setTimeout(() => toWebview({ type: 'response', id: req.id, ok: true, result }), 30);
    const fail = (error) => setTimeout(() => toWebview({ type: 'response', id: req.id, ok: false, error }), 30);
    switch (req.method) {
      case 'similarity': {
        record.similarity.push(req.params.row);
        if (!payload || req.params.runId !== payload.runId) return fail('No such run.');
        return reply(similarity[req.params.row] || coordsSimilarity(req.params.row));
      }
      case 'exportAnalysis':
        record.exports.push(req.params.format);
        return reply('/tmp/analysis.' + req.params.format);
      case 'saveImage':
        record.saved.push({
          name: req.params.name,
          format: req.params.format,
          length: req.params.data.length,
          head: req.params.data.slice(0, 40),
        });
        return reply('/tmp/' + req.params.name + '.' + req.params.format);
      // Completions tab: generation runs in the harness's Node process (generate.mjs) when it is attached
      case 'generate':
        record.generate.push(req.params);
        if (typeof window.__TD_DEV_GENERATE__ !== 'function')
          return fail('No model in this page: generation needs the harness (tools/webview-dev/completions.mjs).');
        return window.__TD_DEV_GENERATE__(req.params).then(reply, (e) => fail(String((e && e.message) || e)));
      case 'stopGeneration':
        record.stops.push(req.params.batchId);
        if (typeof window.__TD_DEV_STOP__ === 'function') window.__TD_DEV_STOP__(req.params.batchId);
        return reply(null);
      case 'insertText':
        record.inserts.push(req.params.text);
        return reply(true);
      case 'analyzeText':
        record.analyses.push(req.params.text);
        return reply(null);
      case 'runCommand':
        record.commands.push(req.params.command);
        return reply(null);
      // Dynamics tabs (attention, proximity, clusters): answered from the payload's precomputed results
      case 'headStats':
      case 'pattern':
      case 'proximity':
      case 'clusters':
      case 'showClusters': {
        (record.dynamics = record.dynamics || []).push({ method: req.method, params: req.params });
        if (!payload || req.params.runId !== payload.runId) return fail('That analysis is no longer loaded; run it again.');
        if (req.method === 'showClusters') return reply(null);
        if (!dynamics) return fail('This payload has no ' + req.method + ' data (make it with tools/webview-dev/dynamics.mjs).');
        const p = req.params;
        if (req.method === 'headStats')
          return dynamics.headStats
            ? reply(dynamics.headStats)
            : fail(dynamics.attentionNote || 'Attention patterns were not computed for this run.');
        if (req.method === 'pattern') {
          const m = dynamics.patterns && dynamics.patterns[p.layer + '.' + p.head];
          return m ? reply(m) : fail(dynamics.patternsNote || 'Attention patterns were not computed for this run.');
        }
        if (req.method === 'proximity')
          return dynamics.proximity[p.pos] ? reply(dynamics.proximity[p.pos]) : fail('Position ' + p.pos + ' is not precomputed.');
        return dynamics.clusters[p.row] ? reply(dynamics.clusters[p.row]) : fail('row ' + p.row + ' is not precomputed.');
      }
      // Diff tab: heatmaps of the prompt diff precomputed for each site and direction (default tokens)
      case 'patching': {
        record.patching.push(req.params);
        const p = req.params;
        const r = dynamics && dynamics.patching && dynamics.patching[(p.site || 'resid_pre') + '.' + p.direction];
        const same = (asked, had) => asked === undefined || asked === had;
        if (!r || p.cleanRunId !== r.cleanRunId || !same(p.target, r.result.target) || !same(p.contrast, r.result.contrast))
          return fail('This heatmap is not precomputed (tools/webview-dev/dynamics.mjs: A clean, default target and contrast).');
        return reply(r.result);
      }
      // a heatmap cell as a whole run: the host sends the patched prompt and the pair, then answers
      case 'openPatched': {
        (record.openPatched = record.openPatched || []).push(req.params);
        const p = req.params;
        const key = [p.site, p.direction, p.cells.map((c) => c.layer + '.' + c.col).join('+')].join('.');
        const o = dynamics && dynamics.opened && dynamics.opened[key];
        if (!o)
          return fail(
            'This patched run is not precomputed (tools/webview-dev/dynamics.mjs: the strongest cell of each site, denoise, and two of mlp_out).',
          );
        payload = o.clean;
        toWebview({ type: 'analysis', payload: o.clean });
        toWebview({ type: 'whatIf', pair: { clean: o.clean, intervened: o.patched } });
        return reply(null);
      }
      default:
        return fail('Unknown method ' + req.method);
    }
  }

  function fromWebview(m) {
    record.posted.push(m && m.type);
    switch (m && m.type) {
      case 'ready': {
        const run = params.get('run') || 'idle';
        const state =
          run === 'running'
            ? { kind: 'running', message: 'Analysing 120 tokens with stories260K…' }
            : run === 'error'
              ? {
                  kind: 'error',
                  message:
                    'The model could not be loaded: config.json is missing "num_hidden_layers".\nCheck the model folder in settings.',
                }
              : run === 'cancelled'
                ? { kind: 'cancelled' }
                : { kind: 'idle' };
        toWebview({ type: 'runState', state });
        toWebview({ type: 'settings', settings: { lensTopK: 8, overlayEnabled: true } });
        if (payload) toWebview({ type: 'analysis', payload });
        else toWebview({ type: 'modelChanged', model: null, modelName: 'stories260K' });
        return;
      }
      case 'request':
        return answer(m);
      case 'selectPosition':
        record.selects.push(m.pos);
        return;
      case 'log':
        record.logs.push(m.level + ': ' + m.message);
        if (m.level === 'error') console.error('[webview] ' + m.message);
        else console.log('[webview ' + m.level + '] ' + m.message);
        return;
      default:
        console.error('[mock host] unexpected message from the webview: ' + JSON.stringify(m).slice(0, 200));
    }
  }

  let acquired = false;
  window.acquireVsCodeApi = function () {
    if (acquired) throw new Error('An instance of the VS Code API has already been acquired');
    acquired = true;
    return Object.freeze({
      postMessage: (m) => fromWebview(m),
      getState: () => JSON.parse(sessionStorage.getItem('td-state') || 'null'),
      setState: (s) => {
        sessionStorage.setItem('td-state', JSON.stringify(s));
        return s;
      },
    });
  };
  /** For the harness: send a message as the host would. */
  window.__TD_HOST__ = { post: toWebview, payload, dynamics };
})();
