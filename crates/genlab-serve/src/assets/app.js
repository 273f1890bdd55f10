// genlab serve: the pages. Plain JavaScript, no build step: each page is a shell whose
// <body data-page> picks one of the renderers below; they fetch JSON from /api and follow
// server-sent event streams. All text from the server goes in as text nodes, never HTML.
'use strict';

// ---- helpers -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

const app = () => document.getElementById('app');
const query = () => new URLSearchParams(location.search);

async function api(path, opts) {
  const resp = await fetch(path, opts);
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (!resp.ok) {
    const err = new Error((body && body.error) || `${resp.status} ${resp.statusText}`);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function post(path, body) {
  return api(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body || {}),
  });
}

// A POST whose answer is a server-sent event stream; calls onEvent(name, data) per event.
// Aborting `signal` closes the connection, which stops the server's job.
async function streamPost(path, body, onEvent, signal) {
  const resp = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText}`;
    try { msg = (await resp.json()).error || msg; } catch (_) { /* keep the status */ }
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}

function fmt(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return '-';
  if (typeof x !== 'number') return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(digits || 3);
  return x.toFixed(digits || 4);
}

function ago(secs) {
  if (!secs) return '-';
  const d = Date.now() / 1000 - secs;
  if (d < 60) return `${Math.max(0, Math.round(d))} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return new Date(secs * 1000).toISOString().slice(0, 10);
}

const badge = (state) => h('span', { class: `badge ${state}`, 'data-state': state }, state);
const runLink = (id) => h('a', { href: `/run?id=${encodeURIComponent(id)}` }, id);
const fileUrl = (path) => '/files/' + path.split('/').map(encodeURIComponent).join('/');

function errorBox(msg) {
  return h('div', { class: 'error', role: 'alert' }, msg);
}

function setError(holder, err) {
  holder.replaceChildren();
  if (err) holder.append(errorBox(err.message || String(err)));
}

function progressBar(done, total) {
  const inner = h('div');
  inner.style.width = total > 0 ? `${Math.min(100, (100 * done) / total)}%` : '0';
  return h('div', { class: 'bar', title: `${done} / ${total}` }, inner);
}

// ---- charts --------------------------------------------------------------------------

const MAX_DRAWN = 3000;
const PALETTE = ['#3558d4', '#d4553f', '#2a9d55', '#a34fc4', '#c99a16', '#3a9fb5'];

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// Ticks of a log axis between 10^lo and 10^hi (exponents): decades, or 1-2-5 steps inside
// them when the range spans less than two decades; values, not exponents.
function logTicks(lo, hi) {
  const out = [];
  const mults = hi - lo < 2 ? [1, 2, 5] : [1];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const m of mults) {
      const v = m * Math.pow(10, e);
      const l = Math.log10(v);
      if (l >= lo && l <= hi) out.push(v);
    }
  }
  if (out.length < 2) return niceTicks(Math.pow(10, lo), Math.pow(10, hi), 4).filter((v) => v > 0);
  return out;
}

function tickText(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential().replace('e+', 'e');
  return String(Number(v.toPrecision(4)));
}

// Draws `series` ([{name, points: [[x, y], ...]}]) into `svg`; log y when every value is
// positive and `logY` asks for it; `xLabel` names the x axis ('step' unless given). The
// total point count goes to svg.dataset.points.
function drawChart(svg, title, series, logY, xLabel) {
  const W = 640, H = 260, L = 62, R = 12, T = 26, B = 34;
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const pts = series.flatMap((sr) => sr.points);
  svg.dataset.points = String(pts.length);
  svg.append(s('text', { x: L, y: 16, class: 'title' }, title));
  if (!pts.length) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no points yet'));
    return;
  }
  const useLog = logY && pts.every((p) => p[1] > 0);
  const fy = (y) => (useLog ? Math.log10(y) : y);
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => fy(p[1]))), y1 = Math.max(...pts.map((p) => fy(p[1])));
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 0.5; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (fy(y) - y0) / (y1 - y0)) * (H - T - B);
  for (const t of niceTicks(x0, x1, 6)) {
    svg.append(s('line', { x1: X(t), x2: X(t), y1: T, y2: H - B, class: 'gridline' }));
    svg.append(s('text', { x: X(t), y: H - B + 14, 'text-anchor': 'middle' }, tickText(t)));
  }
  const yt = useLog ? logTicks(y0, y1) : niceTicks(y0, y1, 5);
  for (const t of yt) {
    const yy = Y(t);
    if (yy < T - 0.5 || yy > H - B + 0.5) continue;
    svg.append(s('line', { x1: L, x2: W - R, y1: yy, y2: yy, class: 'gridline' }));
    svg.append(s('text', { x: L - 6, y: yy + 4, 'text-anchor': 'end' }, tickText(t)));
  }
  svg.append(s('line', { x1: L, x2: L, y1: T, y2: H - B, class: 'axis' }));
  svg.append(s('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis' }));
  svg.append(s('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, xLabel || 'step'));
  series.forEach((sr, i) => {
    if (!sr.points.length) return;
    // A long log draws every k-th point (and the last): a path of a few thousand segments.
    const k = Math.ceil(sr.points.length / MAX_DRAWN);
    const drawn = k > 1 ? sr.points.filter((_, j) => j % k === 0 || j === sr.points.length - 1) : sr.points;
    const d = drawn.map((p, j) => `${j ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
    const colour = PALETTE[i % PALETTE.length];
    svg.append(s('path', { d, fill: 'none', stroke: colour, 'stroke-width': 1.6, 'data-series': sr.name }));
    svg.append(s('text', { x: W - R - 4, y: T + 12 + 13 * i, 'text-anchor': 'end', fill: colour }, sr.name));
  });
}

// ---- runs page -----------------------------------------------------------------------

const RUN_COLUMNS = [
  ['id', 'run'], ['model', 'model'], ['data', 'data'], ['state', 'state'],
  ['step', 'step'], ['last_loss', 'last loss / return'], ['metrics', 'metrics'], ['modified', 'updated'],
];

// An RL run's episodes averaged in its running return (genlab-rl's RUNNING_EPISODES).
const RUNNING_EPISODES = 20;
const isRl = (r) => r.family === 'rl';

// The runs table's "last loss / return" cell: an RL run's last episode return (and its
// last loss if it logs one), else the last loss.
function lossOrReturnText(r) {
  if (!isRl(r)) return fmt(r.last_loss);
  return `return ${fmt(r.last_return)}` + (r.last_loss !== null && r.last_loss !== undefined ? `, ${r.loss_name || 'loss'} ${fmt(r.last_loss)}` : '');
}

function metricsText(m) {
  return Object.entries(m || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
}

async function runsPage() {
  const view = { sort: 'modified', dir: -1, filter: '', state: '' };
  const root = app();
  const errors = h('div');
  const summary = h('p', { class: 'muted', id: 'runs-summary' });
  const filter = h('input', { type: 'text', id: 'filter', placeholder: 'filter: name, model, data, state', size: 34 });
  const stateSel = h('select', { id: 'state-filter' },
    h('option', { value: '' }, 'every state'),
    ...['training', 'finished', 'interrupted', 'broken', 'empty'].map((st) => h('option', { value: st }, st)));
  const head = h('tr', {}, RUN_COLUMNS.map(([key, label]) =>
    h('th', { class: 'sortable', 'data-key': key, onclick: () => {
      view.dir = view.sort === key ? -view.dir : 1;
      view.sort = key;
      render();
    } }, label)));
  const body = h('tbody');
  const table = h('table', { id: 'runs' }, h('thead', {}, head), body);
  root.replaceChildren(h('h1', {}, 'Runs'), summary, errors,
    h('div', { class: 'controls' }, filter, stateSel), table, await trainForm());
  filter.addEventListener('input', () => { view.filter = filter.value.toLowerCase(); render(); });
  stateSel.addEventListener('change', () => { view.state = stateSel.value; render(); });
  let runs = [];
  let rootDir = '';

  function key(r, k) {
    if (k === 'metrics') return metricsText(r.metrics);
    if (k === 'last_loss' && isRl(r)) return r.last_return ?? -Infinity;
    const v = r[k];
    return v === null || v === undefined ? (typeof runs[0]?.[k] === 'number' ? -Infinity : '') : v;
  }

  function render() {
    for (const th of head.children) {
      th.setAttribute('aria-sort', th.dataset.key === view.sort ? (view.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    const shown = runs.filter((r) => {
      if (view.state && r.state !== view.state) return false;
      if (!view.filter) return true;
      return [r.id, r.model, r.data, r.state, isRl(r) ? 'rl' : ''].some((v) => (v || '').toLowerCase().includes(view.filter));
    }).sort((a, b) => {
      const x = key(a, view.sort), y = key(b, view.sort);
      return (x < y ? -1 : x > y ? 1 : 0) * view.dir;
    });
    body.replaceChildren(...shown.map((r) => h('tr', { 'data-id': r.id },
      h('td', {}, runLink(r.id)),
      h('td', {}, r.model || '-', isRl(r) ? h('span', { class: 'muted', title: 'reinforcement learning: the algorithm; data is the environment, steps are environment steps' }, ' (RL)') : null),
      h('td', {}, r.data || '-'),
      h('td', {}, badge(r.state), r.problems.length ? h('span', { class: 'muted', title: r.problems.join('\n') }, ' (!)') : null),
      h('td', { class: 'num' }, `${fmt(r.step)} / ${fmt(r.steps)}`),
      h('td', { class: 'num' }, lossOrReturnText(r)),
      h('td', {}, metricsText(r.metrics)),
      h('td', {}, ago(r.modified)))));
    summary.textContent = `${runs.length} run${runs.length === 1 ? '' : 's'} in ${rootDir}` +
      (shown.length !== runs.length ? `, ${shown.length} shown` : '');
    if (!runs.length) {
      body.append(h('tr', {}, h('td', { colspan: RUN_COLUMNS.length, class: 'muted' },
        'No runs yet: start one below, or with `genlab train --out ' + rootDir + '/NAME ...`.')));
    }
  }

  async function refresh() {
    try {
      const r = await api('/api/runs');
      runs = r.runs;
      rootDir = r.root;
      setError(errors, null);
      render();
    } catch (e) { setError(errors, e); }
  }
  await refresh();
  setInterval(refresh, 3000);
}

async function trainForm() {
  const reg = await api('/api/registry');
  const msg = h('div');
  const models = reg.models.filter((m) => m.capabilities.trains_fresh);
  const name = h('input', { type: 'text', id: 'train-name', placeholder: 'e.g. ddpm-8g', required: true });
  const model = h('select', { id: 'train-model' }, models.map((m) => h('option', { value: m.name, title: m.description }, m.name)));
  const data = h('select', { id: 'train-data' }, reg.datasets.filter((d) => d.web).map((d) => h('option', { value: d.name, title: d.description }, d.usage)));
  const steps = h('input', { type: 'number', id: 'train-steps', min: 1, value: 1000 });
  const seed = h('input', { type: 'number', id: 'train-seed', min: 0, value: 0 });
  const overrides = h('textarea', { id: 'train-overrides', placeholder: 'one key=value per line, e.g. train.lr=2e-4' });
  const form = h('form', { id: 'train-form', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const r = await post('/api/train', {
        name: name.value.trim(), model: model.value, data: data.value,
        steps: Number(steps.value), seed: Number(seed.value),
        overrides: overrides.value.split('\n').map((l) => l.trim()).filter(Boolean),
      });
      msg.replaceChildren(h('div', { class: 'note' }, `Job ${r.job} started: `, runLink(r.run), ' (see ', h('a', { href: '/jobs' }, 'jobs'), ').'));
    } catch (e) { setError(msg, e); }
  } },
  h('div', { class: 'row' },
    h('label', {}, 'run name', name), h('label', {}, 'model', model), h('label', {}, 'data', data),
    h('label', {}, 'steps', steps), h('label', {}, 'seed', seed)),
  h('label', { class: 'muted' }, 'overrides', overrides),
  h('p', {}, h('button', { type: 'submit' }, 'Start training')));
  return h('details', { id: 'new-run' }, h('summary', {}, 'New training run'),
    h('p', { class: 'muted' }, 'Runs the same code as `genlab train`; the run directory is created inside the runs directory.'),
    form, msg);
}

// ---- run page ------------------------------------------------------------------------

async function runPage() {
  const id = query().get('id');
  const root = app();
  if (!id) { root.replaceChildren(errorBox('No run named: open a run from the runs page.')); return; }
  let detail;
  try { detail = await api(`/api/run?id=${encodeURIComponent(id)}`); } catch (e) {
    root.replaceChildren(h('h1', {}, id), errorBox(e.message));
    return;
  }
  const state = h('span', { id: 'run-state' });
  const stepLine = h('span', { class: 'muted', id: 'run-step' });
  const problems = h('div', { id: 'problems' });
  const actions = h('div', { class: 'controls', id: 'actions' });
  const actionMsg = h('div');
  const lossSvg = s('svg', { id: 'loss-chart', class: 'chart', 'data-points': '0' });
  const lrSvg = s('svg', { id: 'lr-chart', class: 'chart', 'data-points': '0' });
  const returnSvg = s('svg', { id: 'return-chart', class: 'chart', 'data-points': '0' });
  const otherSvg = s('svg', { id: 'other-chart', class: 'chart', 'data-points': '0' });
  const otherKey = h('select', { id: 'other-key' });
  const otherBox = h('div', { id: 'other-box', hidden: true }, h('label', { class: 'muted' }, 'other logged value ', otherKey), otherSvg);
  const logNote = h('p', { class: 'muted', id: 'log-note' }, 'reading log.jsonl ...');
  const pictures = h('div', { id: 'pictures' });
  const evals = h('div', { id: 'evaluations' });
  const ckpt = h('div', { id: 'checkpoint' });
  const config = h('pre', { id: 'config' });
  root.replaceChildren(
    h('h1', {}, id, ' ', state), stepLine, problems, actions, actionMsg,
    h('h2', {}, 'Curves'), logNote, h('div', { class: 'grid2' }, returnSvg, lossSvg, lrSvg, otherBox),
    h('h2', {}, 'Pictures'), pictures,
    h('h2', {}, 'Evaluation'), evals,
    h('h2', {}, 'Checkpoint'), ckpt,
    h('h2', {}, 'Config'), config);

  function renderSummaryLine(sm) {
    if (isRl(sm)) {
      stepLine.textContent = `reinforcement learning: ${sm.model || '?'} on ${sm.data || '?'}, seed ${fmt(sm.seed)}: ` +
        `environment step ${fmt(sm.step)} of ${fmt(sm.steps)}, ${fmt(sm.episodes)} episodes` +
        (sm.last_return !== null ? `, last episode return ${fmt(sm.last_return)} (mean of the last ${RUNNING_EPISODES}: ${fmt(sm.running_return)})` : '') +
        (sm.last_loss !== null ? `, last ${sm.loss_name || 'loss'} ${fmt(sm.last_loss)}` : '');
      return;
    }
    stepLine.textContent = `${sm.model || '?'} on ${sm.data || '?'}, seed ${fmt(sm.seed)}: step ${fmt(sm.step)} of ${fmt(sm.steps)}` +
      (sm.last_loss !== null ? `, last ${sm.loss_name || 'loss'} ${fmt(sm.last_loss)}` : '');
  }

  function renderSummary(sm) {
    state.replaceChildren(badge(sm.state));
    renderSummaryLine(sm);
    problems.replaceChildren();
    if (sm.problems.length) {
      problems.append(h('div', { class: 'problems' }, h('strong', {}, 'Problems: '),
        h('ul', {}, sm.problems.map((p) => h('li', {}, p)))));
    }
    renderActions(sm);
  }

  function renderDetail(d) {
    renderSummary(d.summary);
    pictures.replaceChildren(...(d.pictures.length ? d.pictures.map((p) => h('figure', {},
      h('img', { src: fileUrl(p.path) + `?t=${d.summary.modified || 0}`, alt: p.name }),
      h('figcaption', {}, p.name))) : [h('p', { class: 'muted' }, 'No pictures yet (the preview is drawn when training finishes).')]));
    evals.replaceChildren();
    for (const [file, v] of Object.entries(d.evaluations)) {
      evals.append(h('h3', {}, file), h('table', {}, h('tbody', {},
        Object.entries(v).map(([k, x]) => h('tr', {}, h('td', {}, k), h('td', {}, typeof x === 'object' ? JSON.stringify(x) : fmt(x)))))));
    }
    if (!Object.keys(d.evaluations).length) evals.append(h('p', { class: 'muted' }, 'No evaluation results yet.'));
    ckpt.replaceChildren(d.checkpoint
      ? h('dl', { class: 'kv' }, h('dt', {}, 'step'), h('dd', {}, fmt(d.checkpoint.step)),
        h('dt', {}, 'size'), h('dd', {}, `${(d.checkpoint.bytes / 1048576).toFixed(2)} MiB`),
        h('dt', {}, 'saved'), h('dd', {}, ago(d.checkpoint.modified)),
        h('dt', {}, 'file'), h('dd', {}, 'checkpoint.safetensors'))
      : h('p', { class: 'muted' }, 'No readable checkpoint.'));
    config.textContent = d.config ? JSON.stringify(d.config, null, 2) : '(no config)';
  }

  function renderActions(sm) {
    const caps = sm.capabilities || {};
    const hasCkpt = sm.checkpoint_step !== null;
    actions.replaceChildren();
    if (isRl(sm)) {
      // Nothing to sample; training and evaluation stay with `genlab rl`.
      actions.append(h('span', { class: 'muted', id: 'rl-note' },
        'An RL run: continue it with `genlab rl train --algo ', sm.model || 'ALGO', ' --env ', sm.data || 'ENV',
        ' --steps N --out RUN --resume`; evaluate it with `genlab rl eval RUN --json RUN/eval.json` (shown here), ',
        'record it with `genlab rl rollout RUN --out steps.jsonl --gif RUN/rollout.gif`.'));
      return;
    }
    if (caps.generates && hasCkpt) {
      actions.append(h('a', { href: `/playground?run=${encodeURIComponent(id)}` }, 'Sample in the playground'));
    }
    if (caps.sampler_zoo && hasCkpt) {
      actions.append(h('a', { href: `/compare?run=${encodeURIComponent(id)}` }, 'Compare samplers'));
    }
    if (hasCkpt && sm.state !== 'training' && sm.state !== 'broken') {
      const steps = h('input', { type: 'number', id: 'resume-steps', min: 1, value: Math.max((sm.steps || 0), (sm.step || 0) + 1000) });
      actions.append(h('span', {}, 'continue to ', steps, ' steps '),
        h('button', { class: 'secondary', id: 'resume', onclick: async () => {
          try {
            const r = await post('/api/train', { run: id, steps: Number(steps.value) });
            actionMsg.replaceChildren(h('div', { class: 'note' }, `Job ${r.job} continues this run.`));
          } catch (e) { setError(actionMsg, e); }
        } }, 'Continue training'));
    }
    if (caps.likelihood && hasCkpt && sm.state !== 'broken') {
      actions.append(h('button', { class: 'secondary', id: 'eval-nll', onclick: async () => {
        try {
          const r = await post('/api/eval', { run: id, n: 1000 });
          actionMsg.replaceChildren(h('div', { class: 'note' }, `Job ${r.job} evaluates the likelihood (1000 examples); the result goes to nll.json.`));
        } catch (e) { setError(actionMsg, e); }
      } }, 'Evaluate NLL'));
    }
    const stopBox = h('span', { id: 'run-jobs' });
    actions.append(stopBox);
    api('/api/jobs').then((j) => {
      for (const job of j.jobs.filter((x) => x.run === id && x.kind === 'train' && (x.state === 'running' || x.state === 'queued'))) {
        stopBox.append(h('button', { class: 'danger', 'data-job': job.id, onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            await post(`/api/jobs/${job.id}/stop`);
            actionMsg.replaceChildren(h('div', { class: 'note' }, `Stopping job ${job.id}: the checkpoint is saved first.`));
          } catch (e) { setError(actionMsg, e); }
        } }, `Stop training (job ${job.id})`));
      }
    }).catch(() => {});
  }

  renderDetail(detail);
  // Live curves: the log as it grows.
  const records = [];
  let bad = 0;
  let pending = false;
  function redraw() {
    pending = false;
    const lossKeys = new Set();
    for (const r of records) for (const k of Object.keys(r)) if (k === 'loss' || k.endsWith('_loss')) lossKeys.add(k);
    const series = [...lossKeys].sort().map((k) => ({ name: k, points: records.filter((r) => typeof r[k] === 'number').map((r) => [r.step, r[k]]) }));
    const rl = isRl(detail.summary);
    const xLabel = rl ? 'environment steps' : 'step';
    returnSvg.style.display = rl ? '' : 'none';
    lrSvg.style.display = rl ? 'none' : '';
    if (rl) {
      // Every episode's return, and the mean of the last RUNNING_EPISODES of them.
      const eps = records.filter((r) => typeof r.return === 'number');
      const mean = [];
      let sum = 0;
      eps.forEach((r, i) => {
        sum += r.return;
        if (i >= RUNNING_EPISODES) sum -= eps[i - RUNNING_EPISODES].return;
        mean.push([r.step, sum / Math.min(i + 1, RUNNING_EPISODES)]);
      });
      drawChart(returnSvg, 'episode return', [
        { name: 'episode return', points: eps.map((r) => [r.step, r.return]) },
        { name: `mean of the last ${RUNNING_EPISODES}`, points: mean },
      ], false, xLabel);
    }
    drawChart(lossSvg, 'loss (mean per log interval)', series, true, xLabel);
    if (!rl) drawChart(lrSvg, 'learning rate', [{ name: 'lr', points: records.filter((r) => typeof r.lr === 'number').map((r) => [r.step, r.lr]) }], false);
    // Anything else a run logs (a gradient norm, an accuracy, an episode's length): one at
    // a time.
    const others = new Set();
    const drawn = rl ? ['step', 'lr', 'steps_per_sec', 'elapsed_s', 'return', 'episode'] : ['step', 'lr', 'steps_per_sec', 'elapsed_s'];
    for (const r of records) for (const k of Object.keys(r)) if (!lossKeys.has(k) && !drawn.includes(k)) others.add(k);
    const names = [...others].sort();
    otherBox.hidden = !names.length;
    if (names.join() !== [...otherKey.options].map((o) => o.value).join()) {
      const keep = otherKey.value;
      otherKey.replaceChildren(...names.map((k) => h('option', { value: k, selected: k === keep }, k)));
    }
    if (names.length) {
      const k = otherKey.value;
      drawChart(otherSvg, k, [{ name: k, points: records.filter((r) => typeof r[k] === 'number').map((r) => [r.step, r[k]]) }], false, xLabel);
    }
    const last = records[records.length - 1];
    if (last && detail.summary.state === 'training' && last.step > (detail.summary.step || 0)) {
      detail.summary.step = last.step;
      const lk = Object.keys(last).find((k) => k === 'loss') || Object.keys(last).find((k) => k.endsWith('_loss'));
      if (lk) { detail.summary.last_loss = last[lk]; detail.summary.loss_name = lk; }
      if (rl && typeof last.return === 'number') {
        const eps = records.filter((r) => typeof r.return === 'number').slice(-RUNNING_EPISODES);
        detail.summary.last_return = last.return;
        detail.summary.running_return = eps.reduce((a, r) => a + r.return, 0) / eps.length;
        if (typeof last.episode === 'number') detail.summary.episodes = last.episode;
      }
      renderSummaryLine(detail.summary);
    }
    logNote.textContent = `${records.length} logged ${rl ? 'line' : 'step'}${records.length === 1 ? '' : 's'}` +
      (bad ? `; ${bad} unreadable line${bad === 1 ? '' : 's'} in log.jsonl skipped` : '') +
      (detail.summary.state === 'training' ? ' (following the log live)' : '');
  }
  const schedule = () => { if (!pending) { pending = true; requestAnimationFrame(redraw); } };
  redraw();
  otherKey.addEventListener('change', schedule);
  const es = new EventSource(`/api/run/log?id=${encodeURIComponent(id)}`);
  es.addEventListener('records', (ev) => { records.push(...JSON.parse(ev.data)); schedule(); });
  es.addEventListener('reset', () => { records.length = 0; bad = 0; schedule(); });
  es.addEventListener('problems', (ev) => {
    const p = JSON.parse(ev.data);
    if (p.bad_lines !== undefined) bad = p.bad_lines;
    if (p.error) logNote.textContent = p.error;
    schedule();
  });
  es.addEventListener('summary', async (ev) => {
    const sm = JSON.parse(ev.data);
    const changed = sm.state !== detail.summary.state || sm.checkpoint_step !== detail.summary.checkpoint_step;
    detail.summary = sm;
    if (changed) {
      try { detail = await api(`/api/run?id=${encodeURIComponent(id)}`); renderDetail(detail); } catch (_) { renderSummary(sm); }
    } else {
      renderSummary(sm);
    }
    schedule();
  });
}

// ---- playground ----------------------------------------------------------------------

async function runChooser(id, filter, selected) {
  const { runs } = await api('/api/runs');
  const usable = runs.filter(filter);
  const sel = h('select', { id }, usable.map((r) => h('option', { value: r.id, selected: r.id === selected }, `${r.id} (${r.model}, step ${fmt(r.checkpoint_step)})`)));
  return { sel, usable };
}

function paramInput(p) {
  const id = `p-${p.name}`;
  const attrs = { id, name: p.name, title: p.help, disabled: p.fixed };
  let input;
  if (p.type === 'bool') {
    input = h('input', { ...attrs, type: 'checkbox', checked: !!p.default });
    return h('label', { class: 'check', title: p.help }, input, p.label);
  }
  if (p.type === 'choice') {
    input = h('select', attrs, p.choices.map((c) => h('option', { value: c.value, title: c.description, selected: c.value === p.default }, c.value)));
  } else {
    input = h('input', { ...attrs, type: 'number', min: p.min, max: p.max, step: p.type === 'int' ? 1 : 'any', value: p.default });
  }
  return h('label', { title: p.help }, p.label + (p.fixed ? ' (fixed by the model)' : ''), input);
}

function readParams(form, params) {
  const out = {};
  for (const p of params) {
    if (p.fixed) continue;
    const el = form.querySelector(`#p-${p.name}`);
    if (p.type === 'bool') out[p.name] = el.checked;
    else if (p.type === 'choice') out[p.name] = el.value;
    else out[p.name] = el.value === '' ? null : Number(el.value);
  }
  return out;
}

const GROUPS = { samples: 'Samples', sampler: 'Sampler', solver: 'Solver options', model: 'Model options' };

async function playgroundPage() {
  const root = app();
  const want = query().get('run');
  let chooser;
  try {
    chooser = await runChooser('run-select', (r) => r.capabilities && r.capabilities.generates && r.checkpoint_step !== null && r.state !== 'broken', want);
  } catch (e) { root.replaceChildren(errorBox(e.message)); return; }
  const formHolder = h('div', { id: 'form-holder' });
  const errors = h('div', { id: 'error' });
  const progress = h('progress', { id: 'progress', max: 1, value: 0 });
  const status = h('p', { class: 'muted', id: 'status' });
  const batches = h('div', { class: 'batches', id: 'batches' });
  const result = h('div', { id: 'result' });
  const command = h('pre', { id: 'command' });
  const saveMsg = h('div', { id: 'save-msg' });
  const generate = h('button', { id: 'generate', type: 'button' }, 'Generate');
  const cancel = h('button', { id: 'cancel', type: 'button', class: 'danger', disabled: true }, 'Cancel');
  const save = h('button', { id: 'save', type: 'button', class: 'secondary', disabled: true }, 'Save into the run');
  root.replaceChildren(h('h1', {}, 'Sampling playground'),
    chooser.usable.length ? h('p', {}, 'checkpoint ', chooser.sel) : h('p', { class: 'muted' }, 'No run with a checkpoint of a generating model yet.'),
    formHolder, h('div', { class: 'controls' }, generate, cancel, save), errors, progress, status,
    batches, result, h('h2', {}, 'The same samples from the command line'), command, saveMsg);
  let params = [];
  let abort = null;
  let lastJob = null;

  async function loadForm() {
    setError(errors, null);
    formHolder.replaceChildren(h('p', { class: 'muted' }, 'loading the model ...'));
    try {
      const f = await api(`/api/run/form?id=${encodeURIComponent(chooser.sel.value)}`);
      params = f.params;
      const form = h('form', { id: 'params', onsubmit: (ev) => ev.preventDefault() });
      for (const [g, title] of Object.entries(GROUPS)) {
        const ps = params.filter((p) => p.group === g);
        if (!ps.length) continue;
        const fs = h('fieldset', {}, h('legend', {}, title), h('div', { class: 'params' }, ps.map(paramInput)));
        form.append(g === 'solver' ? h('details', {}, h('summary', {}, title), fs) : fs);
      }
      formHolder.replaceChildren(form);
      generate.disabled = false;
    } catch (e) {
      formHolder.replaceChildren();
      setError(errors, e);
      generate.disabled = true;
    }
  }

  generate.addEventListener('click', async () => {
    setError(errors, null);
    saveMsg.replaceChildren();
    batches.replaceChildren();
    result.replaceChildren();
    command.textContent = '';
    progress.value = 0;
    status.textContent = 'submitting ...';
    generate.disabled = true;
    cancel.disabled = false;
    save.disabled = true;
    abort = new AbortController();
    try {
      await streamPost('/api/sample', { run: chooser.sel.value, settings: readParams(formHolder, params) }, (name, d) => {
        if (name === 'state') {
          lastJob = d.job;
          status.textContent = d.state === 'queued' ? `job ${d.job} queued (${d.queue_position} ahead)` : `job ${d.job} ${d.state}`;
        } else if (name === 'progress') {
          progress.max = Math.max(1, d.total);
          progress.value = d.done;
          status.textContent = `job ${lastJob}: ${d.done} / ${d.total} ${d.unit}`;
        } else if (name === 'image') {
          batches.append(h('img', { src: d.png, alt: `batch ${d.batch + 1} of ${d.batches}`, title: `batch ${d.batch + 1} of ${d.batches}` }));
        } else if (name === 'result') {
          batches.replaceChildren();
          result.replaceChildren(h('figure', {}, h('img', { id: 'result-img', src: d.png, alt: 'samples' }),
            h('figcaption', {}, `${d.nfe} network evaluation${d.nfe === 1 ? '' : 's'} per sample, ${d.seconds.toFixed(2)} s` + (d.coverage ? `; ${d.coverage}` : ''))));
          command.textContent = d.command;
        } else if (name === 'end') {
          if (d.state === 'failed') setError(errors, new Error(d.error));
          status.textContent = `job ${d.job} ${d.state}`;
          save.disabled = d.state !== 'done';
        }
      }, abort.signal);
    } catch (e) {
      if (e.name !== 'AbortError') setError(errors, e);
      else status.textContent = 'cancelled';
    } finally {
      generate.disabled = false;
      cancel.disabled = true;
      abort = null;
    }
  });
  cancel.addEventListener('click', () => { if (abort) abort.abort(); });
  save.addEventListener('click', async () => {
    save.disabled = true;
    try {
      const r = await post(`/api/jobs/${lastJob}/save`);
      saveMsg.replaceChildren(h('div', { class: 'note', id: 'saved' }, 'Saved as ', h('a', { href: fileUrl(r.saved) }, r.saved), ' (with its settings and command in a .json beside it).'));
    } catch (e) { setError(saveMsg, e); }
  });
  chooser.sel.addEventListener('change', loadForm);
  if (chooser.usable.length) await loadForm(); else generate.disabled = true;
}

// ---- compare -------------------------------------------------------------------------

async function comparePage() {
  const root = app();
  const want = query().get('run');
  let runs, reg;
  try {
    [{ runs }, reg] = await Promise.all([api('/api/runs'), api('/api/registry')]);
  } catch (e) { root.replaceChildren(errorBox(e.message)); return; }
  const usable = runs.filter((r) => r.capabilities && r.capabilities.sampler_zoo && r.checkpoint_step !== null && r.state !== 'broken');
  const runBoxes = usable.map((r) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: r.id, checked: r.id === want || (!want && r === usable[0]), 'data-run': r.id }), ` ${r.id}`));
  const defaults = ['ddim', 'euler', 'dpm++2m'];
  const samplerBoxes = reg.samplers.map((sm) => h('label', { class: 'check', title: sm.description }, h('input', { type: 'checkbox', value: sm.name, checked: defaults.includes(sm.name), 'data-sampler': sm.name }), ` ${sm.name}`));
  const steps = h('input', { type: 'text', id: 'cmp-steps', value: '10,20,50' });
  const n = h('input', { type: 'number', id: 'cmp-n', min: 1, max: 256, value: 16 });
  const seed = h('input', { type: 'number', id: 'cmp-seed', min: 0, value: 0 });
  const start = h('button', { id: 'cmp-start' }, 'Compare');
  const cancel = h('button', { id: 'cmp-cancel', class: 'danger', disabled: true }, 'Cancel');
  const errors = h('div');
  const status = h('p', { class: 'muted', id: 'cmp-status' });
  const progress = h('progress', { max: 1, value: 0 });
  const cells = h('div', { class: 'cells', id: 'cells' });
  const tbody = h('tbody');
  root.replaceChildren(h('h1', {}, 'Compare samplers'),
    h('p', { class: 'muted' }, 'The same seed through each sampler and step count (and each checkpoint), side by side, as `genlab compare` writes them.'),
    h('fieldset', {}, h('legend', {}, 'Checkpoints'), usable.length ? runBoxes : h('span', { class: 'muted' }, 'No diffusion run with a checkpoint yet.')),
    h('fieldset', {}, h('legend', {}, 'Samplers'), samplerBoxes),
    h('div', { class: 'row' }, h('label', {}, 'steps (comma-separated)', steps), h('label', {}, 'samples per picture', n), h('label', {}, 'seed', seed), start, cancel),
    errors, progress, status, cells,
    h('h2', {}, 'Table'), h('table', { id: 'cmp-table' }, h('thead', {}, h('tr', {}, ['run', 'sampler', 'steps', 'NFE', 'seconds', 'note'].map((c) => h('th', {}, c)))), tbody));
  let abort = null;
  start.addEventListener('click', async () => {
    setError(errors, null);
    cells.replaceChildren();
    tbody.replaceChildren();
    const body = {
      runs: runBoxes.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value),
      samplers: samplerBoxes.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value),
      steps: steps.value.split(',').map((x) => x.trim()).filter(Boolean).map(Number),
      n: Number(n.value), seed: Number(seed.value),
    };
    abort = new AbortController();
    start.disabled = true;
    cancel.disabled = false;
    const total = body.runs.length * body.samplers.length * body.steps.length;
    let done = 0;
    try {
      await streamPost('/api/compare', body, (name, d) => {
        if (name === 'state') status.textContent = `job ${d.job} ${d.state}` + (d.state === 'queued' ? ` (${d.queue_position} ahead)` : '');
        else if (name === 'progress') status.textContent = `${d.message || ''}: ${d.done} / ${d.total} ${d.unit}`;
        else if (name === 'image') {
          const key = `${d.cell.run}|${d.cell.sampler}|${d.cell.steps}`;
          let card = cells.querySelector(`[data-key="${CSS.escape(key)}"]`);
          if (!card) {
            card = h('div', { class: 'cell', 'data-key': key }, h('img', { alt: key }), h('div', { class: 'cap' }, `${d.cell.run} · ${d.cell.sampler} · ${d.cell.steps} steps`), h('div', { class: 'cap muted' }, 'sampling ...'));
            cells.append(card);
          }
          card.querySelector('img').src = d.png;
        } else if (name === 'cell') {
          done += 1;
          progress.max = total;
          progress.value = done;
          const key = `${d.run}|${d.sampler}|${d.steps}`;
          let card = cells.querySelector(`[data-key="${CSS.escape(key)}"]`);
          if (!card) {
            card = h('div', { class: 'cell', 'data-key': key }, h('div', { class: 'cap' }, `${d.run} · ${d.sampler} · ${d.steps} steps`), h('div', { class: 'cap muted' }));
            cells.append(card);
          }
          const note = d.error ? d.error : (d.coverage || '');
          card.lastChild.textContent = d.error ? d.error : `${d.nfe} NFE, ${d.seconds.toFixed(2)} s`;
          tbody.append(h('tr', {}, h('td', {}, d.run), h('td', {}, d.sampler), h('td', { class: 'num' }, d.steps),
            h('td', { class: 'num' }, fmt(d.nfe)), h('td', { class: 'num' }, d.seconds !== undefined ? d.seconds.toFixed(2) : '-'), h('td', {}, note)));
        } else if (name === 'end') {
          status.textContent = `job ${d.job} ${d.state}`;
          if (d.state === 'failed') setError(errors, new Error(d.error));
        }
      }, abort.signal);
    } catch (e) {
      if (e.name !== 'AbortError') setError(errors, e); else status.textContent = 'cancelled';
    } finally {
      start.disabled = false;
      cancel.disabled = true;
      abort = null;
    }
  });
  cancel.addEventListener('click', () => { if (abort) abort.abort(); });
}

// ---- jobs ----------------------------------------------------------------------------

async function jobsPage() {
  const root = app();
  const info = h('p', { class: 'muted', id: 'jobs-info' });
  const errors = h('div');
  const tbody = h('tbody');
  root.replaceChildren(h('h1', {}, 'Jobs'), info, errors,
    h('table', { id: 'jobs' }, h('thead', {}, h('tr', {}, ['job', 'kind', 'what', 'state', 'progress', 'news', ''].map((c) => h('th', {}, c)))), tbody));
  async function refresh() {
    try {
      const j = await api('/api/jobs');
      setError(errors, null);
      info.textContent = `${j.workers} job${j.workers === 1 ? '' : 's'} run at a time; up to ${j.capacity} wait in the queue.`;
      tbody.replaceChildren(...j.jobs.map((job) => {
        const stoppable = job.state === 'queued' || (job.state === 'running' && job.kind !== 'eval');
        const p = job.progress;
        return h('tr', { 'data-job': job.id },
          h('td', { class: 'num' }, job.id),
          h('td', {}, job.kind),
          h('td', {}, job.run ? runLink(job.run) : '', ' ', h('span', { class: 'muted' }, job.title)),
          h('td', {}, badge(job.state), job.queue_position !== null ? ` #${job.queue_position + 1}` : ''),
          h('td', {}, progressBar(p.done, p.total), h('span', { class: 'muted' }, p.total ? `${p.done} / ${p.total} ${p.unit}` : '')),
          h('td', {}, job.error ? h('span', { class: 'error' }, job.error) : p.message),
          h('td', {}, stoppable ? h('button', { class: 'danger', 'data-stop': job.id, onclick: async (ev) => {
            ev.target.disabled = true;
            try { await post(`/api/jobs/${job.id}/stop`); refresh(); } catch (e) { setError(errors, e); }
          } }, job.kind === 'train' && job.state === 'running' ? 'Stop (saves a checkpoint)' : 'Stop') : ''));
      }));
      if (!j.jobs.length) tbody.append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No jobs yet.')));
    } catch (e) { setError(errors, e); }
  }
  await refresh();
  setInterval(refresh, 1000);
}

// ---- start ---------------------------------------------------------------------------

const PAGES = { runs: runsPage, run: runPage, playground: playgroundPage, compare: comparePage, jobs: jobsPage };

document.addEventListener('DOMContentLoaded', () => {
  const page = document.body.dataset.page;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.nav === page || (page === 'run' && a.dataset.nav === 'runs')) a.classList.add('active');
  }
  (PAGES[page] || runsPage)().catch((e) => app().replaceChildren(errorBox(e.message || String(e))));
});
