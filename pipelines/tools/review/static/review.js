// thresher review: the page. Every value from the run is put in the page as text (textContent), never as
// HTML; the decision is the server's (tune's code): the page only sends slider values and draws results.
'use strict';

const S = {meta: null, setting: {}, tab: 'flips', page: 0, queue: [], pos: 0, rule: '', side: 'rejected', seq: 0};
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {method: 'POST', headers: {'Content-Type': 'application/json'},
                                             body: JSON.stringify(body)};
  const response = await fetch(path, {credentials: 'same-origin', ...options});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function showError(err) {
  $('error').hidden = !err;
  $('error').textContent = err ? String(err.message || err) : '';
}

function fmt(v) {
  if (typeof v === 'number') return Number.isInteger(v) ? v.toLocaleString('en') : v.toPrecision(4);
  return v === null || v === undefined ? '–' : String(v);
}

// --- sliders and histograms -----------------------------------------------------------------
function histogram(slider) {
  const h = S.meta.histograms[slider.key];
  if (!h) return null;  // a rule without a score column (image side, caption length, dedup)
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 270 42');
  const top = Math.max(1, ...h.counts);
  const w = 270 / h.counts.length;
  h.counts.forEach((n, i) => {
    const r = document.createElementNS(ns, 'rect');
    const height = 40 * Math.sqrt(n / top);
    r.setAttribute('x', i * w); r.setAttribute('width', Math.max(w - 1, 1));
    r.setAttribute('y', 42 - height); r.setAttribute('height', height);
    svg.append(r);
  });
  const line = document.createElementNS(ns, 'line');
  line.setAttribute('y1', 0); line.setAttribute('y2', 42);
  svg.append(line);
  return svg;
}

function placeLine(slider, value) {
  const line = document.querySelector(`.slider[data-key="${slider.key}"] line`);
  if (!line) return;
  const x = 270 * (value - slider.low) / Math.max(slider.high - slider.low, 1e-12);
  line.setAttribute('x1', x); line.setAttribute('x2', x);
}

function buildSliders() {
  const box = $('sliders');
  box.append(el('h2', {}, 'Thresholds'));
  for (const s of S.meta.sliders) {
    const step = s.integer ? 1 : (s.high - s.low) / 200;
    const range = el('input', {type: 'range', min: s.low, max: s.high, step, value: s.value, 'data-key': s.key});
    const num = el('input', {type: 'number', class: 'num', step: s.integer ? 1 : 'any', value: s.value, 'data-key': s.key});
    const row = el('div', {class: 'slider', 'data-key': s.key},
      el('label', {}, `${s.label} (${s.reason})`), range, num, el('small', {}, ` ${s.key}`), histogram(s));
    const set = (value, from) => {
      if (!Number.isFinite(value)) return;
      if (from !== range) range.value = value;
      if (from !== num) num.value = value;
      if (value === s.value) delete S.setting[s.key]; else S.setting[s.key] = value;
      placeLine(s, value);
      schedule();
    };
    range.addEventListener('input', () => set(Number(range.value), range));
    num.addEventListener('change', () => set(Number(num.value), num));
    box.append(row);
    placeLine(s, s.value);
  }
  const reset = el('button', {id: 'reset'}, 'reset to the run\'s');
  reset.addEventListener('click', () => {
    S.setting = {};
    for (const s of S.meta.sliders) {
      document.querySelectorAll(`input[data-key="${s.key}"]`).forEach((i) => { i.value = s.value; });
      placeLine(s, s.value);
    }
    schedule();
  });
  box.append(reset);
}

let timer = null;
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 150);
}

async function refresh() {
  const seq = ++S.seq;
  $('busy').hidden = false;
  try {
    const data = await api('/api/counts', {setting: S.setting});
    if (seq !== S.seq) return;
    renderCounts(data.report);
    showError(null);
    await showTab(S.tab);
  } catch (err) {
    showError(err);
  } finally {
    if (seq === S.seq) $('busy').hidden = true;
  }
}

function renderCounts(r) {
  const body = $('counts').tBodies[0];
  body.replaceChildren();
  const line = (label, before, after, key) => {
    const change = after - before;
    body.append(el('tr', {'data-reason': key},
      el('td', {}, label), el('td', {}, fmt(before)), el('td', {class: 'after'}, fmt(after)),
      el('td', {class: change > 0 ? 'up' : change < 0 ? 'down' : ''}, (change > 0 ? '+' : '') + fmt(change))));
  };
  line('kept', r.kept_before, r.kept_after, 'kept');
  line('rejected', r.rows - r.kept_before, r.rows - r.kept_after, 'rejected');
  const reasons = [...new Set([...Object.keys(r.reasons_before), ...Object.keys(r.reasons_after)])].sort();
  for (const reason of reasons) line('  ' + reason, r.reasons_before[reason] || 0, r.reasons_after[reason] || 0, reason);
  $('totals').textContent = `${fmt(r.rows)} rows · kept ${fmt(r.kept_after)} (run: ${fmt(r.kept_before)}) · ` +
    `newly kept ${fmt(r.newly_kept)} · newly rejected ${fmt(r.newly_rejected)}`;
  $('totals').dataset.kept = r.kept_after;
}

// --- cards and the sample page --------------------------------------------------------------
function thumb(c, big) {
  if (!c.image) return el('div', {class: 'noimg'}, 'no staged image');
  const img = el('img', {class: 'thumb' + (c.blur ? ' blurred' : ''), alt: '', loading: 'lazy',
                         src: `/api/thumb/${c.row}`});
  if (c.blur) {
    img.title = 'NSFW: click to reveal';
    img.addEventListener('click', (e) => { e.stopPropagation(); img.classList.toggle('revealed'); });
  }
  return img;
}

function card(c, opts) {
  const pending = c.pending_reasons || [];
  const keep = c.pending_keep === null ? c.keep : c.pending_keep;
  const node = el('div', {class: 'card ' + (keep ? 'kept' : 'rejected'), 'data-row': c.row, 'data-sample': c.sample_id},
    thumb(c),
    el('div', {class: 'caption'}, c.caption === null ? '(no caption)' : c.caption),
    el('div', {class: 'url'}, c.url || ''),
    el('div', {}, `${c.sample_id} · ${c.status}`),
    el('div', {class: 'reasons'}, 'run: ' + (c.reasons.length ? c.reasons.join(', ') : 'kept')),
    el('div', {class: 'pending'}, 'now: ' + (pending.length ? pending.join(', ') : 'kept')),
    el('div', {class: 'scores'}, Object.entries(c.scores).filter(([, v]) => v !== null)
      .map(([k, v]) => `${k} ${fmt(v)}`).join(' · ')));
  if (!(opts && opts.static)) node.addEventListener('click', () => openSample(c.row));
  return node;
}

function grid(id, cards) {
  $(id).replaceChildren(...cards.map((c) => card(c)));
}

async function openSample(row) {
  try {
    const data = await api('/api/sample', {index: row, setting: S.setting});
    const pair = $('sample-pair');
    pair.replaceChildren(card(data.card, {static: true}));
    if (data.survivor) {
      const l = data.link;
      pair.append(el('div', {class: 'link'}, 'duplicate of →', el('br'), `${l.kind || ''} by ${l.detector || '?'}`,
        el('br'), `similarity ${fmt(l.similarity)}`, el('br'), `cluster ${fmt(l.cluster)}`),
        card(data.survivor, {static: true}));
    }
    const table = $('sample-fields');
    table.replaceChildren(...Object.entries(data.fields).map(([k, v]) =>
      el('tr', {}, el('td', {}, k), el('td', {}, typeof v === 'object' && v !== null ? JSON.stringify(v) : fmt(v)))));
    $('sample').hidden = false;
    $('sample').dataset.row = row;
  } catch (err) {
    showError(err);
  }
}

// --- tabs -----------------------------------------------------------------------------------
async function showTab(tab) {
  S.tab = tab;
  document.querySelectorAll('nav button').forEach((b) => b.classList.toggle('active', b.dataset.tab === tab));
  document.querySelectorAll('.pane').forEach((p) => { p.hidden = p.id !== 'pane-' + tab; });
  if (tab === 'flips') {
    const [rejected, kept] = await Promise.all([
      api('/api/flips', {setting: S.setting, which: 'newly_rejected'}),
      api('/api/flips', {setting: S.setting, which: 'newly_kept'})]);
    $('flips-rejected-total').textContent = `(${fmt(rejected.total)})`;
    $('flips-kept-total').textContent = `(${fmt(kept.total)})`;
    grid('flips-rejected', rejected.cards);
    grid('flips-kept', kept.cards);
  } else if (tab === 'nearest' && $('nearest-key').value) {
    const data = await api('/api/nearest', {setting: S.setting, key: $('nearest-key').value});
    grid('nearest-below', data.below);
    grid('nearest-above', data.above);
  } else if (tab === 'browse') {
    await browse();
  } else if (tab === 'estimates') {
    await estimates();
  }
}

function browseQuery() {
  const form = new FormData($('browse-form'));
  const ranges = {};
  for (const score of S.meta.scores) {
    const lo = form.get(score + '_lo'), hi = form.get(score + '_hi');
    if (lo || hi) ranges[score] = [lo ? Number(lo) : null, hi ? Number(hi) : null];
  }
  const kept = form.get('kept');
  return {status: form.get('status'), reason: form.get('reason'), caption: form.get('caption'),
          kept: kept === '' ? null : kept === 'true', ranges, page: S.page};
}

let browsing = 0;
async function browse() {
  const mine = ++browsing;  // a slower, older search must not overwrite a newer one
  const data = await api('/api/browse', {query: browseQuery(), setting: S.setting});
  if (mine !== browsing) return;
  const first = data.page * 60;
  $('browse-info').textContent = `${fmt(data.total)} rows · showing ${fmt(Math.min(first + 1, data.total))}–` +
    `${fmt(Math.min(first + 60, data.total))}`;
  grid('browse-grid', data.cards);
}

// --- labels ---------------------------------------------------------------------------------
async function draw() {
  S.rule = $('label-rule').value;
  S.side = $('label-side').value;
  const data = await api('/api/queue', {setting: S.setting, rule: S.rule, side: S.side,
                                        n: Number($('label-n').value) || 20, seed: Date.now() % 1000000});
  S.queue = data.cards;
  S.pos = 0;
  showQueued();
}

function showQueued() {
  const c = S.queue[S.pos];
  $('label-status').textContent = c ? `sample ${S.pos + 1} of ${S.queue.length} (${c.stratum}); ` +
    'press g (good), b (bad) or s (skip)' : 'nothing to label: draw samples';
  $('label-card').replaceChildren(...(c ? [card(c, {static: true})] : []));
}

async function label(value) {
  const c = S.queue[S.pos];
  if (!c) return;
  await api('/api/label', {row: c.row, sample_id: c.sample_id, label: value, rule: S.rule, stratum: c.stratum});
  S.pos += 1;
  showQueued();
  await loadLabels();
}

async function loadLabels() {
  const rows = await api('/api/labels');
  $('label-done').replaceChildren(...rows.map((r) =>
    el('div', {class: 'labelled', 'data-sample': r.sample_id, 'data-label': r.label},
      `${r.sample_id}: ${r.label} (${r.rule || '?'}, ${r.stratum || ''}, by ${r.who})`)));
  $('label-done').dataset.count = rows.length;
}

function pct(e) {
  return e.share === null ? 'no labels' : `${(100 * e.share).toFixed(1)}% [${(100 * e.low).toFixed(1)}–${(100 * e.high).toFixed(1)}%]`;
}

async function estimates() {
  const rows = await api('/api/estimates', {setting: S.setting});
  $('estimates').tBodies[0].replaceChildren(...rows.map((r) => el('tr', {'data-rule': r.rule},
    el('td', {}, r.rule), el('td', {}, fmt(r.rejected)), el('td', {}, pct(r.precision)),
    el('td', {}, pct(r.bad_among_kept)), el('td', {}, pct(r.recall)),
    el('td', {}, `${r.precision.labelled} rejected, ${r.bad_among_kept.labelled} kept`))));
}

async function exportSetting() {
  const data = await api('/api/export', {setting: S.setting});
  $('snippet').textContent = data.snippet;
  $('command').textContent = data.command;
  $('export-kept').textContent = `reexport with these keeps ${fmt(data.kept)} rows`;
}

// --- start ----------------------------------------------------------------------------------
function options(select, values) {
  for (const v of values) select.append(el('option', {value: v}, v));
}

async function start() {
  S.meta = await api('/api/meta');
  $('run').textContent = S.meta.run;
  buildSliders();
  const form = $('browse-form');
  options(form.elements.status, S.meta.statuses);
  options(form.elements.reason, S.meta.reasons);
  for (const score of S.meta.scores) {
    $('browse-ranges').append(el('label', {}, ` ${score} `, el('input', {name: score + '_lo', type: 'number', step: 'any', placeholder: 'min'}),
      el('input', {name: score + '_hi', type: 'number', step: 'any', placeholder: 'max'})));
  }
  options($('nearest-key'), S.meta.sliders.filter((s) => s.column).map((s) => s.key));
  options($('label-rule'), [...new Set([...S.meta.reasons, ...S.meta.sliders.map((s) => s.reason)])].sort());
  document.querySelectorAll('nav button').forEach((b) => b.addEventListener('click', () => showTab(b.dataset.tab).catch(showError)));
  form.addEventListener('submit', (e) => { e.preventDefault(); S.page = 0; browse().catch(showError); });
  $('browse-prev').addEventListener('click', () => { S.page = Math.max(0, S.page - 1); browse().catch(showError); });
  $('browse-next').addEventListener('click', () => { S.page += 1; browse().catch(showError); });
  $('nearest-key').addEventListener('change', () => showTab('nearest').catch(showError));
  $('label-draw').addEventListener('click', () => draw().catch(showError));
  $('estimates-refresh').addEventListener('click', () => estimates().catch(showError));
  $('export-btn').addEventListener('click', () => exportSetting().catch(showError));
  $('sample-close').addEventListener('click', () => { $('sample').hidden = true; });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') $('sample').hidden = true;
    if (S.tab !== 'label' || e.target.tagName === 'INPUT' || e.target.tagName === 'SELECT') return;
    const value = {g: 'good', b: 'bad', s: 'skip'}[e.key];
    if (value) label(value).catch(showError);
    if (e.key === 'ArrowLeft') { S.pos = Math.max(0, S.pos - 1); showQueued(); }
  });
  await loadLabels();
  await refresh();
  document.body.dataset.ready = '1';
}

start().catch(showError);
