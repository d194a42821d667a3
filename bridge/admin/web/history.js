// Ghost Port dashboard: the request history (bridge/admin/ADMIN.md, "History"): what the bridges
// keep in Redis per minute for 24 h, per house, per bridge and for all of them, drawn as plain
// SVG charts (no library, nothing from outside the bridge). app.js owns the API and the routes;
// it hands this file its api() and formatters (GPHistory.init) and says which history a panel
// shows (GPHistory.show). Data reaches the page through textContent and attributes only.
'use strict';

window.GPHistory = (function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const H = 150; // chart height in px; the width follows the panel
  const M = { l: 58, r: 10, t: 10, b: 22 }; // margins: y labels left, time labels below
  const RANGES = ['1h', '6h', '24h'];
  const STEP_WORD = { 60: 'minute', 300: '5 minutes', 600: '10 minutes' };

  let deps = null; // {api, fmtMs, fmtBytes, fmtInt, isNum, onError}
  const panels = new Map(); // id -> panel state

  function svg(tag, attrs, text) {
    const n = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function el(tag, props, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'text') n.textContent = v;
      else if (k === 'className') n.className = v;
      else n.setAttribute(k, v);
    }
    for (const k of kids) if (k) n.append(k);
    return n;
  }

  // A round upper bound for an axis: 1, 2 or 5 times a power of ten; for bytes (base 1024)
  // 1, 2, 4 or 8 times a power of two within its unit (KiB, MiB, ...), then 16 ... 512.
  function niceMax(v, base) {
    if (!(v > 0)) return 1;
    if (base === 1024) {
      const unit = Math.pow(1024, Math.max(0, Math.floor(Math.log(v) / Math.log(1024))));
      let m = 1;
      while (m * unit < v) m *= 2;
      return m * unit;
    }
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  function clock(ms, withDate) {
    const d = new Date(ms);
    const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return withDate ? d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + hm : hm;
  }

  // The charts of one panel: what each draws from a point, how its values read.
  function chartDefs(step) {
    const per = STEP_WORD[step] || (step / 60) + ' minutes';
    const n = (v) => (deps.isNum(v) ? v : 0);
    return [
      { key: 'requests', title: 'Requests per ' + per, kind: 'bars', fmt: deps.fmtInt,
        series: [{ name: 'answered (status < 500)', cls: 'ok', get: (p) => n(p.requests) - n(p.errors) },
          { name: 'errors (status ≥ 500 or an error reply)', cls: 'err', get: (p) => n(p.errors) }] },
      { key: 'errors', title: 'Errors per ' + per, kind: 'bars', fmt: deps.fmtInt,
        series: [{ name: 'errors (status ≥ 500 or an error reply)', cls: 'err', get: (p) => n(p.errors) }] },
      { key: 'latency', title: 'Latency, forward → final reply', kind: 'lines', fmt: deps.fmtMs,
        series: [{ name: 'p50 (median)', cls: 'p50', get: (p) => (deps.isNum(p.p50_ms) ? p.p50_ms : null) },
          { name: 'p99', cls: 'p99', get: (p) => (deps.isNum(p.p99_ms) ? p.p99_ms : null) }] },
      { key: 'bytes', title: 'Body bytes per ' + per, kind: 'lines', fmt: deps.fmtBytes, base: 1024,
        series: [{ name: 'to the house (request bodies)', cls: 'to', get: (p) => n(p.bytes_to_house) },
          { name: 'from the house (response bodies)', cls: 'from', get: (p) => n(p.bytes_from_house) }] },
    ];
  }

  // One chart into its figure: axes, gridlines, the series, a hover title per point.
  function draw(fig, def, data) {
    const box = fig.querySelector('svg');
    const W = Math.max(240, Math.round(box.getBoundingClientRect().width) || 600);
    box.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    box.setAttribute('height', String(H));
    const pts = data.points;
    const n = pts.length;
    const pw = W - M.l - M.r, ph = H - M.t - M.b;
    const vals = def.series.map((s) => pts.map(s.get));
    let top = 0;
    if (def.kind === 'bars') for (let i = 0; i < n; i++) top = Math.max(top, vals.reduce((a, v) => a + (v[i] || 0), 0));
    else for (const v of vals) for (const x of v) if (x !== null) top = Math.max(top, x);
    const ymax = niceMax(top, def.base);
    const y = (v) => M.t + ph - (v / ymax) * ph;
    const bw = pw / Math.max(1, n);
    const x = (i) => M.l + i * bw;
    const kids = [];
    for (const f of [0, 0.5, 1]) { // gridlines and their labels
      const yy = y(ymax * f);
      kids.push(svg('line', { x1: M.l, x2: W - M.r, y1: yy, y2: yy, class: f ? 'grid' : 'axis' }));
      kids.push(svg('text', { x: M.l - 6, y: yy + 4, 'text-anchor': 'end', class: 'tick' },
        f ? def.fmt(ymax * f).replace(/\.0+ /, ' ') : '0')); // "500 ms", not "500.0 ms"
    }
    const longRange = n * data.step_s > 6 * 3600;
    const segs = Math.max(1, Math.min(4, Math.floor(pw / 120))); // time labels: as many as fit
    for (let k = 0; k <= segs; k++) {
      const i = Math.round((k * n) / segs);
      const t = data.from_ms + i * data.step_s * 1000;
      kids.push(svg('line', { x1: x(i), x2: x(i), y1: M.t + ph, y2: M.t + ph + 4, class: 'axis' }));
      // the first label starts at its tick, the last ends at it: both stay inside the chart
      kids.push(svg('text', { x: x(i), y: H - 5, 'text-anchor': k === 0 ? 'start' : k === segs ? 'end' : 'middle', class: 'tick' },
        clock(t, longRange && (k === 0 || k === segs))));
    }
    if (def.kind === 'bars') {
      for (let i = 0; i < n; i++) {
        let base = 0;
        def.series.forEach((s, j) => {
          const v = vals[j][i] || 0;
          if (v <= 0) return;
          const y0 = y(base), y1 = y(base + v);
          kids.push(svg('rect', { x: (x(i) + bw * 0.1).toFixed(1), y: y1.toFixed(1), width: Math.max(1, bw * 0.8).toFixed(1),
            height: Math.max(1, y0 - y1).toFixed(1), class: 'bar ' + s.cls + (i === n - 1 ? ' partial' : '') }));
          base += v;
        });
      }
    } else {
      def.series.forEach((s, j) => { // a line per series, broken where there is no value
        let run = [];
        const flush = () => {
          if (run.length === 1) kids.push(svg('circle', { cx: run[0][0], cy: run[0][1], r: 2, class: 'dot ' + s.cls }));
          else if (run.length > 1) kids.push(svg('polyline', { points: run.map((p) => p.join(',')).join(' '), class: 'line ' + s.cls }));
          run = [];
        };
        vals[j].forEach((v, i) => {
          if (v === null) { flush(); return; }
          run.push([(x(i) + bw / 2).toFixed(1), y(v).toFixed(1)]);
        });
        flush();
      });
    }
    // Hover: a title per point with every series' value (the browser shows it).
    for (let i = 0; i < n; i++) {
      const t = data.from_ms + i * data.step_s * 1000;
      const lines = def.series.map((s, j) => s.name + ': ' + (vals[j][i] === null ? '–' : def.fmt(vals[j][i])));
      const hit = svg('rect', { x: x(i).toFixed(1), y: M.t, width: bw.toFixed(1), height: ph, class: 'hit' });
      hit.append(svg('title', {}, clock(t, true) + (i === n - 1 ? ' (still being counted)' : '') + '\n' + lines.join('\n')));
      kids.push(hit);
    }
    if (top === 0)
      kids.push(svg('text', { x: M.l + pw / 2, y: M.t + ph / 2, 'text-anchor': 'middle', class: 'empty' },
        def.kind === 'bars' ? 'none in this range' : 'no requests in this range'));
    box.replaceChildren(...kids);
    box.setAttribute('data-max', String(top));
  }

  function summary(p, data) {
    const t = data.total || {};
    const rng = { '1h': 'Last hour', '6h': 'Last 6 hours', '24h': 'Last 24 hours' }[data.range] || data.range;
    const req = deps.isNum(t.requests) ? t.requests : 0;
    const parts = [rng + ': ' + deps.fmtInt(req) + ' request' + (req === 1 ? '' : 's'),
      deps.fmtInt(t.errors) + ' error' + (t.errors === 1 ? '' : 's') + ' (' + (deps.isNum(t.error_pct) ? t.error_pct.toFixed(1) : '0.0') + ' %)',
      'p50 ' + deps.fmtMs(t.p50_ms), 'p99 ' + deps.fmtMs(t.p99_ms),
      deps.fmtBytes(t.bytes_to_house) + ' to the house', deps.fmtBytes(t.bytes_from_house) + ' from it'];
    p.summary.textContent = parts.join(' · ');
    const flush = deps.isNum(data.flush_ms) ? data.flush_ms : 60000;
    p.note.textContent = 'One bar or point per ' + (STEP_WORD[data.step_s] || data.step_s + ' s') +
      '. Bridges write what they counted every ' + (flush >= 60000 ? 'minute' : Math.round(flush / 100) / 10 + ' s') +
      ', so the last ' + (flush >= 60000 ? 'minute' : 'seconds') + ' may not show yet; the last point (faded) is still being counted. ' +
      'Percentiles come from per-minute histograms (within 6 %).' +
      (data.skipped ? ' ' + data.skipped + ' malformed record' + (data.skipped === 1 ? '' : 's') + ' in Redis skipped.' : '');
  }

  function render(p) {
    if (!p.data) return;
    const defs = chartDefs(p.data.step_s);
    if (p.figs.length !== defs.length || p.step !== p.data.step_s) {
      p.step = p.data.step_s;
      p.charts.replaceChildren();
      p.figs = defs.map((d) => {
        const capId = p.id + '-' + d.key + '-cap';
        const fig = el('figure', { className: 'chart', 'data-chart': d.key },
          el('figcaption', { id: capId, text: d.title }),
          svg('svg', { role: 'img', 'aria-labelledby': capId, preserveAspectRatio: 'xMinYMin meet' }),
          el('ul', { className: 'legend' }, ...d.series.map((s) => el('li', {},
            el('span', { className: 'swatch ' + s.cls, 'aria-hidden': 'true' }), el('span', { text: s.name })))));
        p.charts.append(fig);
        return fig;
      });
    }
    defs.forEach((d, i) => draw(p.figs[i], d, p.data));
    summary(p, p.data);
  }

  async function load(p) {
    if (!p.path) return;
    const my = ++p.gen;
    clearTimeout(p.timer);
    let next = 15000;
    try {
      const d = await deps.api('GET', p.path() + '?range=' + p.range);
      if (my !== p.gen) return;
      p.data = d;
      p.root.classList.remove('stale');
      render(p);
      if (deps.isNum(d.flush_ms) && d.flush_ms > 0) next = Math.min(15000, Math.max(2000, d.flush_ms));
    } catch (e) {
      if (my !== p.gen) return;
      p.root.classList.add('stale');
      p.note.textContent = 'History unavailable: ' + (e && e.message ? e.message : e);
      if (deps.onError && !deps.onError(e)) return;
    }
    if (my === p.gen && !document.hidden) p.timer = setTimeout(() => load(p), next);
  }

  // Builds the panel inside root (an element of index.html with .hist-* children).
  function panel(id, root) {
    const p = { id, root, range: '1h', gen: 0, timer: null, path: null, key: '', data: null, figs: [], step: 0,
      summary: root.querySelector('.hist-summary'), note: root.querySelector('.hist-note'),
      charts: root.querySelector('.hist-charts'), scope: root.querySelector('.hist-scope') };
    for (const b of root.querySelectorAll('.hist-range button')) {
      b.addEventListener('click', () => {
        p.range = b.dataset.range;
        for (const o of root.querySelectorAll('.hist-range button')) o.setAttribute('aria-pressed', String(o === b));
        load(p);
      });
    }
    if (p.scope) p.scope.addEventListener('change', () => load(p));
    panels.set(id, p);
    if (ro) ro.observe(p.charts);
    return p;
  }

  // Charts are drawn at their width in pixels (text stays its size): drawn again when a
  // panel's width changes (the window, the layout going to one column).
  let resizeTimer = null;
  const redraw = () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { for (const p of panels.values()) if (p.path) render(p); }, 60);
  };
  const widths = new Map();
  const ro = typeof ResizeObserver === 'function' ? new ResizeObserver((entries) => {
    let changed = false;
    for (const e of entries) {
      const w = Math.round(e.contentRect.width);
      if (widths.get(e.target) !== w) { widths.set(e.target, w); changed = true; }
    }
    if (changed) redraw();
  }) : null;
  if (!ro) window.addEventListener('resize', redraw);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) for (const p of panels.values()) if (p.path) load(p);
  });

  return {
    RANGES,
    init(d) {
      deps = d;
      for (const root of document.querySelectorAll('[data-history]')) panel(root.dataset.history, root);
    },
    // Panel id shows the history at pathFn() (a function: the overview's follows its scope
    // select; pathFn.key names what it shows, a new key starts the panel afresh); null stops it.
    show(id, pathFn) {
      const p = panels.get(id);
      if (!p) return;
      clearTimeout(p.timer);
      p.gen++;
      const key = pathFn ? String(pathFn.key) : '';
      if (!pathFn || key !== p.key) { // another history: nothing of the last one stays
        p.data = null;
        p.figs = [];
        p.charts.replaceChildren();
        p.summary.textContent = pathFn ? 'Loading…' : '';
        p.note.textContent = '';
      }
      p.path = pathFn;
      p.key = key;
      if (pathFn) load(p);
    },
    stopAll() {
      for (const id of panels.keys()) this.show(id, null);
    },
    // The scope select of a panel: "" (all bridges) and one option per bridge id.
    setBridges(id, ids) {
      const p = panels.get(id);
      if (!p || !p.scope) return;
      const want = [''].concat(ids);
      const have = Array.from(p.scope.options).map((o) => o.value);
      if (want.length === have.length && want.every((v, i) => v === have[i])) return;
      const cur = p.scope.value;
      p.scope.replaceChildren(...want.map((v) => el('option', { value: v, text: v ? 'Bridge ' + v : 'All bridges' })));
      p.scope.value = want.includes(cur) ? cur : '';
    },
    scopeOf(id) {
      const p = panels.get(id);
      return p && p.scope ? p.scope.value : '';
    },
  };
})();
