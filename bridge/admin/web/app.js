// Ghost Port dashboard: a client of the bridge's admin JSON API (bridge/admin/ADMIN.md).
// Vanilla JS, no build step. Data only ever reaches the page through textContent / attributes
// (never innerHTML); the admin token lives in sessionStorage and travels only in the
// Authorization header.
'use strict';

(function () {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 8000;
  // Rows the houses table shows at most (after filter and sort): a deployment of thousands
  // stays responsive; the count says how many more the filter would reach.
  const MAX_ROWS = 500;
  const TOKEN_KEY = 'ghostport.adminToken';

  const $ = (id) => document.getElementById(id);

  // ---- small DOM helpers ----------------------------------------------------------------
  function el(tag, props, ...kids) {
    const n = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null) continue;
        if (k === 'text') n.textContent = v;
        else if (k === 'className') n.className = v;
        else if (k === 'dataset') Object.assign(n.dataset, v);
        else n.setAttribute(k, v);
      }
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) n.append(kid);
    return n;
  }
  function setText(node, text, title) {
    text = text === null || text === undefined ? '' : String(text);
    if (node.textContent !== text) node.textContent = text;
    if (title !== undefined && node.title !== title) node.title = title;
  }
  function setClass(node, cls) {
    if (node.className !== cls) node.className = cls;
  }
  function show(node, on) {
    if (node.hidden === on) node.hidden = !on;
  }

  // ---- formatting ------------------------------------------------------------------------
  const isNum = (v) => typeof v === 'number' && isFinite(v);
  function fmtDuration(ms) {
    if (!isNum(ms)) return '–';
    let s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + s + 's';
    return s + 's';
  }
  function fmtTime(ms) {
    return isNum(ms) && ms > 0 ? new Date(ms).toLocaleString() : '';
  }
  function fmtClock(ms) {
    return isNum(ms) && ms > 0 ? new Date(ms).toLocaleTimeString() : '–';
  }
  function fmtRate(v) {
    if (!isNum(v)) return '–';
    if (v === 0) return '0';
    return v < 10 ? v.toFixed(1) : String(Math.round(v));
  }
  // Latencies and round trips: µs below a millisecond, 0.1 ms up to a second, then seconds.
  function fmtMs(v) {
    if (!isNum(v)) return '–';
    if (v < 1) return Math.round(v * 1000) + ' µs';
    if (v < 1000) return v.toFixed(1) + ' ms';
    return (v / 1000).toFixed(v < 10000 ? 2 : 1) + ' s';
  }
  // A round trip: 0 is "not measured yet" (the first PING is still to come).
  const fmtRtt = (v) => (isNum(v) && v > 0 ? fmtMs(v) : '–');
  function fmtPct(v) {
    return isNum(v) ? (Math.round(v * 10) / 10) + ' %' : '–';
  }
  function fmtBytes(v) {
    if (!isNum(v)) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + ' ' + u[i];
  }
  function fmtInt(v) {
    return isNum(v) ? String(v) : '–';
  }
  // bytes/s as bits/s, SI prefixes: "8.1 Mbit/s", or short ("8.1M") for the table
  function fmtBits(bytesPerS, short) {
    if (!isNum(bytesPerS)) return '–';
    let v = bytesPerS * 8;
    const u = short ? ['', 'k', 'M', 'G', 'T'] : [' bit/s', ' kbit/s', ' Mbit/s', ' Gbit/s', ' Tbit/s'];
    let i = 0;
    while (v >= 999.5 && i < u.length - 1) { v /= 1000; i++; }
    return (i === 0 ? Math.round(v) : v.toFixed(v < 9.95 ? 1 : 0)) + u[i];
  }
  const fmtBitsShort = (v) => fmtBits(v, true);
  function fmtLabels(labels) {
    if (!labels || typeof labels !== 'object') return '';
    return Object.keys(labels).sort().map((k) => k + '=' + labels[k]).join(' ');
  }

  // ---- the API ---------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // What an operator should read for each failure (ADMIN.md's error codes).
  function describeError(status, code, serverMsg) {
    const extra = serverMsg ? ' (' + serverMsg + ')' : '';
    if (status === 401) return 'No admin token was sent: sign in with the bridge\'s admin token.';
    if (status === 403 && code === 'admin_disabled')
      return 'The admin API is turned off on this bridge: start it with --admin-token or --admin-token-file.';
    if (status === 403) return 'Wrong token: the bridge refused it.';
    if (status === 503) return 'Redis unavailable: the bridge cannot reach Redis right now' + extra + '.';
    if (status === 404) return 'Not found' + extra + '.';
    if (status === 409) return 'A house with this id already exists.';
    if (status === 400) return 'Refused by the bridge' + (serverMsg ? ': ' + serverMsg : '') + '.';
    if (status === 413) return 'Too large for the bridge' + extra + '.';
    return 'The bridge answered HTTP ' + status + (code ? ' ' + code : '') + extra + '.';
  }

  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return memToken; }
  }
  let memToken = '';
  function setToken(t) {
    memToken = t;
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: memToken serves this page's life */ }
  }

  async function api(method, path, body, token) {
    const headers = { Accept: 'application/json' };
    const tok = token === undefined ? getToken() : token;
    if (tok) headers.Authorization = 'Bearer ' + tok;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    // A bridge that hangs (its Redis stalled) must not freeze the page: abort after a bound.
    const ctl = typeof AbortController === 'function' ? new AbortController() : null;
    if (ctl) init.signal = ctl.signal;
    const timeout = setTimeout(() => ctl && ctl.abort(), FETCH_TIMEOUT_MS);
    let res, text;
    try {
      res = await fetch(path, init);
      text = await res.text();
    } catch (e) {
      throw new ApiError(0, 'network', e && e.name === 'AbortError'
        ? 'The bridge did not answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s; retrying.'
        : 'The bridge does not answer (connection failed); retrying.');
    } finally {
      clearTimeout(timeout);
    }
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!res.ok) {
      const code = data && typeof data.error === 'string' ? data.error : '';
      const msg = data && typeof data.message === 'string' ? data.message : '';
      throw new ApiError(res.status, code, describeError(res.status, code, msg));
    }
    if (data === null || typeof data !== 'object')
      throw new ApiError(res.status, 'bad_json', 'The bridge sent an answer that is not JSON.');
    return data;
  }

  // ---- rates from counter deltas ---------------------------------------------------------
  // key -> {t, req, err, rps, eps}; t from performance.now() so that overview and
  // house polls share one clock.
  const rates = new Map();
  function sample(key, req, err) {
    const now = performance.now();
    let s = rates.get(key);
    if (!s) {
      s = { t: now, req: isNum(req) ? req : null, err: isNum(err) ? err : null, rps: null, eps: null };
      rates.set(key, s);
      return s;
    }
    const dt = (now - s.t) / 1000;
    if (dt < 0.3) return s; // two polls back to back: keep the last rate
    if (!isNum(req)) {
      // offline: no counters; the throughput is zero
      s.rps = null; s.eps = null; s.req = null; s.err = null;
    } else if (s.req === null || req < s.req || (isNum(err) && s.err !== null && err < s.err)) {
      // first counters, or a reset (new connection, restarted bridge): a new baseline
      s.rps = null; s.eps = null; s.req = req; s.err = isNum(err) ? err : 0;
    } else {
      s.rps = (req - s.req) / dt;
      s.eps = isNum(err) && s.err !== null ? Math.max(0, (err - s.err) / dt) : null;
      s.req = req; s.err = isNum(err) ? err : s.err;
    }
    s.t = now;
    return s;
  }

  // The L3 tunnel's packets and bytes per second, in (from the house into the hub) and out,
  // from the same deltas: key -> {t, c: the counters, r: their rates}. A counter absent (no
  // grant) or gone down (a new grant, a new connection) starts them over.
  const TUN_COUNTERS = ['tun_pkts_in', 'tun_pkts_out', 'tun_bytes_in', 'tun_bytes_out'];
  const NO_TUN_RATES = { tun_pkts_in: null, tun_pkts_out: null, tun_bytes_in: null, tun_bytes_out: null };
  const tunRates = new Map();
  function sampleTun(h) {
    const now = performance.now();
    const key = 't:' + h.id;
    const c = h.connected && TUN_COUNTERS.every((k) => isNum(h[k])) ? TUN_COUNTERS.map((k) => h[k]) : null;
    let s = tunRates.get(key);
    if (!s || !c || !s.c || c.some((v, i) => v < s.c[i])) {
      s = { t: now, c, r: NO_TUN_RATES };
      tunRates.set(key, s);
      return s.r;
    }
    const dt = (now - s.t) / 1000;
    if (dt < 0.3) return s.r; // two polls back to back: keep the last rates
    const r = {};
    TUN_COUNTERS.forEach((k, i) => { r[k] = (c[i] - s.c[i]) / dt; });
    s.t = now; s.c = c; s.r = r;
    return r;
  }
  const tunRateOf = (h) => (tunRates.get('t:' + h.id) || { r: NO_TUN_RATES }).r;
  const hasTun = (h) => (Array.isArray(h.tun_addr) && h.tun_addr.length > 0) || isNum(h.tun_pkts_in);
  const sumRates = (a, b) => (isNum(a) || isNum(b) ? (a || 0) + (b || 0) : null);
  const fmtInOut = (a, b, f) => f(a) + ' / ' + f(b);

  // ---- status line, banner, notice ------------------------------------------------------
  let skewMs = 0; // server clock - client clock, from now_ms
  const serverNow = () => Date.now() + skewMs;

  function setLive(ok, text) {
    const live = $('live');
    setClass(live, 'live ' + (ok ? 'ok' : 'bad'));
    document.body.classList.toggle('stale', !ok); // the tables keep the last data, dimmed
    setText($('live-text'), text);
  }
  function setBanner(msg) {
    setText($('banner'), msg || '');
    show($('banner'), !!msg);
  }
  let noticeTimer = null;
  function setNotice(msg) {
    setText($('notice'), msg || '');
    show($('notice'), !!msg);
    clearTimeout(noticeTimer);
    if (msg) noticeTimer = setTimeout(() => setNotice(''), 8000);
  }

  // ---- routing ---------------------------------------------------------------------------
  let route = { name: 'overview' };
  let gen = 0; // bumped on every route change: late answers of an old view are dropped
  let timer = null;

  function parseRoute() {
    const h = location.hash.replace(/^#\/?/, '');
    if (h.startsWith('house/')) {
      let id = h.slice(6);
      try { id = decodeURIComponent(id); } catch (_) { /* keep it raw */ }
      return { name: 'house', id };
    }
    if (h === 'add') return { name: 'add' };
    return { name: 'overview' };
  }
  const houseHref = (id) => '#/house/' + encodeURIComponent(id);

  const views = ['login', 'overview', 'house', 'add'];
  function showView(name) {
    for (const v of views) show($('view-' + v), v === name);
    const signedIn = name !== 'login';
    show($('nav'), signedIn);
    show($('signout'), signedIn);
    show($('live'), signedIn);
    $('nav-overview').toggleAttribute('aria-current', false);
    $('nav-add').toggleAttribute('aria-current', false);
    if (name === 'overview') $('nav-overview').setAttribute('aria-current', 'page');
    if (name === 'add') $('nav-add').setAttribute('aria-current', 'page');
  }

  function onRoute() {
    route = parseRoute();
    gen++;
    clearTimeout(timer);
    if (!getToken()) {
      showLogin('');
      return;
    }
    if (route.name !== 'add') clearSecret();
    if (route.name === 'house') {
      document.title = route.id + ' — Ghost Port';
      enterHouse(route.id);
    } else if (route.name === 'add') {
      document.title = 'Add a house — Ghost Port';
      loadListeners();
    } else {
      document.title = 'Ghost Port';
    }
    showView(route.name);
    showHistory(route);
    tick();
  }

  // ---- polling ---------------------------------------------------------------------------
  async function tick() {
    const my = gen;
    clearTimeout(timer);
    if (!getToken()) return;
    if (document.hidden) { // a hidden tab asks nothing; visibilitychange wakes us
      return;
    }
    try {
      if (route.name === 'overview') {
        const o = await api('GET', '/api/overview');
        if (my !== gen) return;
        renderOverview(o);
      } else if (route.name === 'house') {
        const h = await api('GET', '/api/houses/' + encodeURIComponent(route.id));
        if (my !== gen) return;
        renderHouse(h);
      } else {
        setLive(true, 'signed in'); // the add form polls nothing
        return;
      }
      setBanner('');
      setLive(true, 'live · ' + new Date().toLocaleTimeString());
    } catch (e) {
      if (my !== gen) return;
      if (!handleError(e)) return;
    }
    if (my === gen) timer = setTimeout(tick, POLL_MS);
  }

  // Shows the error; returns 1 to keep polling, 0 when the user must act (sign in again).
  function handleError(e) {
    const msg = e instanceof ApiError ? e.message : 'Unexpected error: ' + e;
    if (e.status === 401 || (e.status === 403)) {
      setToken('');
      showLogin(msg);
      return false;
    }
    if (e.status === 404 && route.name === 'house') {
      houseMissing(route.id);
      setLive(true, 'live · ' + new Date().toLocaleTimeString());
      return true;
    }
    setBanner(msg);
    setLive(false, e.status === 503 ? 'Redis unavailable' : e.status === 0 ? 'bridge unreachable' : 'error');
    return true;
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) tick();
  });

  // ---- the request history (history.js draws it) --------------------------------------
  // The overview's panel shows all bridges or the one its select names; a house's page, the
  // house's. Other views stop them.
  function showHistory(r) {
    const H = window.GPHistory;
    if (!H) return;
    const overview = () => {
      const b = H.scopeOf('overview');
      return b ? '/api/bridges/' + encodeURIComponent(b) + '/history' : '/api/history';
    };
    overview.key = 'overview';
    const house = () => '/api/houses/' + encodeURIComponent(r.id) + '/history';
    house.key = 'house:' + r.id;
    H.show('overview', r.name === 'overview' ? overview : null);
    H.show('house', r.name === 'house' ? house : null);
  }

  // ---- login -----------------------------------------------------------------------------
  function showLogin(msg) {
    gen++;
    clearTimeout(timer);
    if (window.GPHistory) window.GPHistory.stopAll();
    showView('login');
    setBanner('');
    setText($('login-error'), msg);
    show($('login-error'), !!msg);
    document.title = 'Sign in — Ghost Port';
    $('token-input').focus();
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const tok = $('token-input').value.trim();
    if (!tok) {
      setText($('login-error'), 'Enter the admin token.');
      show($('login-error'), true);
      return;
    }
    const btn = $('login-submit');
    btn.disabled = true;
    setText($('login-error'), 'Checking…');
    show($('login-error'), true);
    try {
      await api('GET', '/api/overview', undefined, tok);
    } catch (e) {
      // 503: the token passed (the API checks it before Redis): sign in, the banner tells.
      if (!(e instanceof ApiError) || e.status !== 503) {
        setText($('login-error'), e instanceof ApiError ? e.message : String(e));
        btn.disabled = false;
        $('token-input').select();
        return;
      }
    }
    btn.disabled = false;
    $('token-input').value = '';
    show($('login-error'), false);
    setToken(tok);
    onRoute();
  });

  $('signout').addEventListener('click', () => {
    setToken('');
    showLogin('Signed out.');
  });

  // ---- overview: bridges -----------------------------------------------------------------
  // Rows are kept by key and only their changed cells are rewritten: no flicker, and focus
  // and selection survive a refresh.
  function syncRows(tbody, items, keyOf, build, update) {
    const old = new Map();
    for (const tr of Array.from(tbody.rows)) old.set(tr.dataset.key, tr);
    let i = 0;
    for (const it of items) {
      const k = keyOf(it);
      let tr = old.get(k);
      if (tr) old.delete(k); else tr = build(it, k);
      update(tr, it);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      i++;
    }
    for (const tr of old.values()) tr.remove();
  }
  function cells(tr, cols) {
    for (const c of cols) tr.append(el('td', { className: c.cls || '', dataset: { col: c.key } }));
    return tr;
  }
  const cell = (tr, key) => tr.querySelector('td[data-col="' + key + '"]');

  const BRIDGE_COLS = [
    { key: 'id', cls: 'mono' }, { key: 'host' }, { key: 'pid', cls: 'num' }, { key: 'up' },
    { key: 'houses', cls: 'num' }, { key: 'rps', cls: 'num' }, { key: 'eps', cls: 'num' },
    { key: 'in', cls: 'num' }, { key: 'out', cls: 'num' }, { key: 'connects', cls: 'num' },
    { key: 'authfail', cls: 'num' }, { key: 'redis', cls: 'num' },
  ];
  function renderBridges(list, now) {
    const tbody = $('bridges').tBodies[0];
    const items = list.slice().sort((a, b) => String(a.id).localeCompare(String(b.id)));
    syncRows(tbody, items, (b) => String(b.id),
      (b, k) => cells(el('tr', { dataset: { key: k, id: k } }), BRIDGE_COLS),
      (tr, b) => {
        const r = sample('b:' + b.id, b.req_total, b.err_total);
        setText(cell(tr, 'id'), b.id);
        setText(cell(tr, 'host'), b.host || '–');
        setText(cell(tr, 'pid'), fmtInt(b.pid));
        setText(cell(tr, 'up'), isNum(b.since_ms) ? fmtDuration(now - b.since_ms) : '–', fmtTime(b.since_ms));
        setText(cell(tr, 'houses'), fmtInt(b.houses));
        setText(cell(tr, 'rps'), fmtRate(r.rps));
        setText(cell(tr, 'eps'), fmtRate(r.eps));
        setText(cell(tr, 'in'), fmtBytes(b.bytes_in));
        setText(cell(tr, 'out'), fmtBytes(b.bytes_out));
        setText(cell(tr, 'connects'), fmtInt(b.connects_total));
        setText(cell(tr, 'authfail'), fmtInt(b.auth_failures_total));
        setText(cell(tr, 'redis'), fmtMs(b.redis_rtt_ms));
      });
    setText($('bridges-count'), '(' + list.length + ')');
    if (window.GPHistory) window.GPHistory.setBridges('overview', items.map((b) => String(b.id)));
    show($('bridges-empty'), list.length === 0);
  }

  // ---- overview: houses ------------------------------------------------------------------
  function stateOf(h) {
    if (h.disabled) return h.connected ? 'disabled (still connected)' : 'disabled';
    return h.connected ? 'online' : 'offline';
  }
  // Since when the house is in its state: online, since a bridge took it; offline (disabled
  // or not), since a bridge last heard from it (null: never).
  const stateSince = (h) => h.connected ? h.since_ms : h.offline_since_ms;
  const lastSeen = (h) => isNum(h.last_seen_ms) ? h.last_seen_ms : h.offline_since_ms;
  function offlineNote(h) {
    if (h.connected || !isNum(h.offline_since_ms)) return '';
    return 'offline since ' + fmtTime(h.offline_since_ms) + (h.last_bridge ? ', last held by bridge ' + h.last_bridge : '');
  }
  const HOUSE_COLS = [
    { key: 'id', label: 'House', type: 's', get: (h) => String(h.id) },
    { key: 'state', label: 'State', type: 's', get: (h) => stateOf(h) },
    { key: 'bridge', label: 'Bridge', type: 's', get: (h) => h.connected ? h.bridge || '' : '' },
    { key: 'transport', label: 'Transport', type: 's', get: (h) => h.connected ? h.transport || '' : '' },
    { key: 'since', label: 'Since', title: 'in its state since: online, since a bridge took it; offline, since a bridge last heard from it', type: 'n', get: (h, now) => isNum(stateSince(h)) ? now - stateSince(h) : null },
    { key: 'seen', label: 'Last seen', type: 'n', get: (h, now) => isNum(lastSeen(h)) ? now - lastSeen(h) : null },
    { key: 'rtt', label: 'RTT', type: 'n', num: true, get: (h) => h.connected && isNum(h.rtt_ms) ? h.rtt_ms : null },
    { key: 'loss', label: 'Loss', type: 'n', num: true, get: (h) => h.connected && isNum(h.loss_pct) ? h.loss_pct : null },
    { key: 'rps', label: 'req/s', type: 'n', num: true, get: (h) => rateOf(h).rps },
    { key: 'eps', label: 'err/s', type: 'n', num: true, get: (h) => rateOf(h).eps },
    // The L3 tunnel's (shown while some house has an address): its first address, packets/s
    // and bits/s in / out (sorted by the sum).
    { key: 'tun', label: 'L3 address', type: 'a', tun: true, get: (h) => Array.isArray(h.tun_addr) && h.tun_addr.length ? String(h.tun_addr[0]) : '' },
    { key: 'tpps', label: 'L3 pkt/s', title: 'L3 tunnel packets per second, in / out (in: from the house into the hub)', type: 'n', num: true, tun: true, get: (h) => sumRates(tunRateOf(h).tun_pkts_in, tunRateOf(h).tun_pkts_out) },
    { key: 'tbps', label: 'L3 bit/s', title: 'L3 tunnel bits per second, in / out (in: from the house into the hub)', type: 'n', num: true, tun: true, get: (h) => sumRates(tunRateOf(h).tun_bytes_in, tunRateOf(h).tun_bytes_out) },
  ];
  const rateOf = (h) => rates.get('h:' + h.id) || { rps: null, eps: null };

  let sortKey = 'id';
  let sortDir = 1;
  let lastOverview = null;

  function buildHouseHeader() {
    const tr = $('houses').tHead.rows[0];
    for (const c of HOUSE_COLS) {
      const btn = el('button', { type: 'button', className: 'sort', dataset: { sort: c.key } },
        el('span', { text: c.label }), el('span', { className: 'arrow', 'aria-hidden': 'true' }));
      btn.addEventListener('click', () => {
        if (sortKey === c.key) sortDir = -sortDir; else { sortKey = c.key; sortDir = 1; }
        updateSortHeader();
        if (lastOverview) renderHouses(lastOverview.houses || [], lastOverview.now);
      });
      tr.append(el('th', { scope: 'col', className: (c.num ? 'num' : '') + (c.tun ? ' tun' : ''), title: c.title, dataset: { col: c.key } }, btn));
    }
    updateSortHeader();
  }
  function updateSortHeader() {
    for (const th of $('houses').tHead.rows[0].cells) {
      const on = th.dataset.col === sortKey;
      if (on) th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
      setText(th.querySelector('.arrow'), on ? (sortDir > 0 ? '▲' : '▼') : '');
      th.querySelector('button').setAttribute('aria-label',
        th.querySelector('span').textContent + (on ? (sortDir > 0 ? ', sorted ascending' : ', sorted descending') : ', sort'));
    }
  }

  function matches(h, q) {
    if (!q) return true;
    const hay = [h.id, h.connected ? h.bridge : '', h.connected ? h.transport : '', stateOf(h), fmtLabels(h.labels),
      Array.isArray(h.tun_addr) ? h.tun_addr.join(' ') : '']
      .join(' ').toLowerCase();
    return q.split(/\s+/).every((w) => hay.includes(w));
  }

  function renderHouses(list, now) {
    const q = $('filter').value.trim().toLowerCase();
    const col = HOUSE_COLS.find((c) => c.key === sortKey) || HOUSE_COLS[0];
    const shown = list.filter((h) => matches(h, q)).map((h) => ({ h, v: col.get(h, now) }));
    shown.sort((a, b) => {
      const av = a.v, bv = b.v;
      const an = av === null || av === undefined || av === '', bn = bv === null || bv === undefined || bv === '';
      if (an !== bn) return an ? 1 : -1; // blanks last in both directions
      let c = 0;
      if (!an) c = col.type === 'n' ? av - bv
        : String(av).localeCompare(String(bv), undefined, { numeric: col.type === 'a' }); // a: addresses, 100.96.0.7 before .10
      if (c === 0) c = String(a.h.id).localeCompare(String(b.h.id));
      return c * sortDir;
    });
    const tbody = $('houses').tBodies[0];
    const rows = shown.slice(0, MAX_ROWS);
    syncRows(tbody, rows.map((x) => x.h), (h) => String(h.id), buildHouseRow, (tr, h) => updateHouseRow(tr, h, now));
    const total = list.length;
    let count = shown.length === total ? String(total) : shown.length + ' of ' + total;
    if (rows.length < shown.length) count += '; the first ' + rows.length + ' shown: filter to narrow';
    setText($('houses-count'), '(' + count + ')');
    const empty = $('houses-empty');
    setText(empty, total === 0 ? 'No house is registered yet: add one with “Add house”.' : shown.length === 0 ? 'No house matches the filter.' : '');
    show(empty, shown.length === 0);
  }
  function buildHouseRow(h, k) {
    const tr = el('tr', { dataset: { key: k, id: k } });
    for (const c of HOUSE_COLS) tr.append(el('td', { className: (c.num ? 'num' : '') + (c.tun ? ' tun' : ''), dataset: { col: c.key } }));
    const idCell = cell(tr, 'id');
    idCell.append(el('a', { href: houseHref(h.id), className: 'mono', text: h.id }), el('span', { className: 'labels' }));
    return tr;
  }
  function updateHouseRow(tr, h, now) {
    const r = rateOf(h);
    setText(tr.querySelector('td[data-col="id"] .labels'), fmtLabels(h.labels));
    setText(cell(tr, 'bridge'), h.connected ? h.bridge || '–' : '–');
    setText(cell(tr, 'transport'), h.connected ? h.transport || '–' : '–');
    const since = stateSince(h);
    setText(cell(tr, 'since'), isNum(since) ? fmtDuration(now - since) : '–',
      h.connected ? 'online since ' + fmtTime(since) : offlineNote(h));
    setText(cell(tr, 'seen'), isNum(lastSeen(h)) ? fmtDuration(now - lastSeen(h)) + ' ago' : '–', fmtTime(lastSeen(h)));
    setText(cell(tr, 'rtt'), h.connected ? fmtRtt(h.rtt_ms) : '–');
    setText(cell(tr, 'loss'), h.connected ? fmtPct(h.loss_pct) : '–');
    setText(cell(tr, 'rps'), fmtRate(r.rps));
    setText(cell(tr, 'eps'), fmtRate(r.eps));
    const tr3 = tunRateOf(h);
    const addrs = Array.isArray(h.tun_addr) ? h.tun_addr : [];
    setText(cell(tr, 'tun'), addrs.length ? addrs[0] : '–', addrs.join(', ') + (addrs.length && !h.tun_up ? ' (not granted now)' : ''));
    const granted = h.connected && isNum(h.tun_pkts_in); // the grant's counters: rates to show
    setText(cell(tr, 'tpps'), granted ? fmtInOut(tr3.tun_pkts_in, tr3.tun_pkts_out, fmtRate) : '–');
    setText(cell(tr, 'tbps'), granted ? fmtInOut(tr3.tun_bytes_in, tr3.tun_bytes_out, fmtBitsShort) : '–');
    const st = stateOf(h);
    const stCell = cell(tr, 'state');
    setText(stCell, st, offlineNote(h));
    setClass(stCell, 'state ' + (h.disabled ? 'disabled' : h.connected ? 'connected' : 'offline'));
    setClass(tr, h.disabled ? 'is-disabled' : h.connected ? 'is-connected' : 'is-offline');
  }

  function renderOverview(o) {
    const now = isNum(o.now_ms) ? o.now_ms : Date.now();
    if (isNum(o.now_ms)) skewMs = o.now_ms - Date.now();
    const houses = Array.isArray(o.houses) ? o.houses : [];
    for (const h of houses) {
      sample('h:' + h.id, h.connected ? h.req_total : undefined, h.connected ? h.err_total : undefined);
      sampleTun(h);
    }
    $('houses').classList.toggle('has-tun', houses.some(hasTun));
    lastOverview = { houses, now };
    renderBridges(Array.isArray(o.bridges) ? o.bridges : [], now);
    renderHouses(houses, now);
  }

  $('filter').addEventListener('input', () => {
    if (lastOverview) renderHouses(lastOverview.houses, lastOverview.now);
  });

  // ---- one house -------------------------------------------------------------------------
  let current = null; // the last answer for the house shown

  function enterHouse(id) {
    current = null;
    setText($('house-id'), id);
    setText($('house-state'), '…');
    setClass($('house-state'), 'badge');
    $('house-toggle').disabled = true;
    $('house-remove').disabled = true;
    $('house-details').replaceChildren();
    $('recent').tBodies[0].replaceChildren();
    show($('recent-empty'), false);
  }

  function houseMissing(id) {
    current = null;
    setText($('house-state'), 'not registered');
    setClass($('house-state'), 'badge state offline');
    $('house-toggle').disabled = true;
    $('house-remove').disabled = true;
    $('house-details').replaceChildren(el('dt', { text: 'Registry' }), el('dd', { text: 'House ' + id + ' is not registered (removed?).' }));
    $('recent').tBodies[0].replaceChildren();
  }

  function renderHouse(h) {
    current = h;
    const now = isNum(h.now_ms) ? h.now_ms : serverNow();
    const r = sample('h:' + h.id, h.connected ? h.req_total : undefined, h.connected ? h.err_total : undefined);
    const tr3 = sampleTun(h);
    const st = stateOf(h);
    setText($('house-state'), st);
    setClass($('house-state'), 'badge state ' + (h.disabled ? 'disabled' : h.connected ? 'connected' : 'offline'));
    const tog = $('house-toggle');
    setText(tog, h.disabled ? 'Enable' : 'Disable');
    setClass(tog, h.disabled ? '' : 'warn'); // amber: reversible; Remove alone is red
    tog.disabled = false;
    $('house-remove').disabled = false;

    const rows = [
      ['State', st],
      ['Bridge', h.connected ? h.bridge : '–'],
      ['Transport', h.connected ? h.transport : '–'],
      ['Connected', h.connected && isNum(h.since_ms) ? fmtDuration(now - h.since_ms) + ' (since ' + fmtTime(h.since_ms) + ')' : '–'],
      ['Offline since', !h.connected && isNum(h.offline_since_ms) ? fmtTime(h.offline_since_ms) + ' (' + fmtDuration(now - h.offline_since_ms) + ' ago' + (h.last_bridge ? ', last held by bridge ' + h.last_bridge : '') + ')' : '–'],
      ['Last seen', isNum(lastSeen(h)) ? fmtDuration(now - lastSeen(h)) + ' ago' : '–'],
      ['RTT', h.connected ? fmtRtt(h.rtt_ms) : '–'],
      ['Loss', h.connected ? fmtPct(h.loss_pct) : '–'],
      ['req/s', fmtRate(r.rps)],
      ['err/s', fmtRate(r.eps)],
      ['Requests', h.connected ? fmtInt(h.req_total) + ' (' + fmtInt(h.err_total) + ' errors)' : '–'],
      ['Body bytes from / to the house', h.connected ? fmtBytes(h.bytes_in) + ' / ' + fmtBytes(h.bytes_out) : '–'],
      ['FEC repaired', h.connected ? fmtInt(h.fec_repaired) : '–'],
    ];
    // The L3 tunnel (proto/TUN.md): its addresses and the routes the registry allows it, and
    // while granted its packets, bytes and drops (in: from the house into the hub).
    const addrs = Array.isArray(h.tun_addr) ? h.tun_addr : [];
    const routes = Array.isArray(h.tun_routes) ? h.tun_routes : [];
    if (addrs.length || routes.length || isNum(h.tun_pkts_in)) {
      const up = h.connected && h.tun_up;
      rows.push(
        ['L3 address', addrs.length ? addrs.join(', ') + (up ? ' (up)' : ' (not granted now)') : '–'],
        ['L3 routes', routes.length ? routes.join(', ') : '–'],
        ['L3 packets in / out', up ? fmtInOut(h.tun_pkts_in, h.tun_pkts_out, fmtInt) + ' (' + fmtInOut(tr3.tun_pkts_in, tr3.tun_pkts_out, fmtRate) + ' per s)' : '–'],
        ['L3 bytes in / out', up ? fmtInOut(h.tun_bytes_in, h.tun_bytes_out, fmtBytes) + ' (' + fmtInOut(tr3.tun_bytes_in, tr3.tun_bytes_out, fmtBits) + ')' : '–'],
        ['L3 drops', up ? fmtInt(h.tun_drops) : '–']);
    }
    rows.push(['Labels', fmtLabels(h.labels) || '–'], ['Registered', fmtTime(h.created_ms) || '–']);
    const dl = $('house-details');
    if (dl.children.length !== rows.length * 2 || rows.some(([k], i) => dl.children[i * 2].textContent !== k)) {
      dl.replaceChildren();
      for (const [k] of rows) dl.append(el('dt', { text: k }), el('dd', { dataset: { field: k } }));
    }
    rows.forEach(([, v], i) => setText(dl.children[i * 2 + 1], v));
    renderRecent(Array.isArray(h.recent) ? h.recent : []);
  }

  function renderRecent(list) {
    const tbody = $('recent').tBodies[0];
    const seen = new Map();
    const keyed = list.map((q) => {
      let k = String(q.ts_ms) + ' ' + String(q.id);
      const n = (seen.get(k) || 0) + 1; // same frame answered twice: keep both rows
      seen.set(k, n);
      if (n > 1) k += ' #' + n;
      return { q, k };
    });
    syncRows(tbody, keyed, (x) => x.k,
      (x, k) => {
        const tr = el('tr', { dataset: { key: k, id: String(x.q.id) } });
        for (const c of ['time', 'method', 'path', 'status', 'ms', 'error'])
          tr.append(el('td', { className: c === 'status' || c === 'ms' ? 'num' : c === 'path' ? 'path mono' : c === 'method' ? 'mono' : '', dataset: { col: c } }));
        return tr;
      },
      (tr, x) => {
        const q = x.q;
        setText(cell(tr, 'time'), fmtClock(q.ts_ms), fmtTime(q.ts_ms) + (q.id ? ' — frame ' + q.id : ''));
        setText(cell(tr, 'method'), q.method || '');
        setText(cell(tr, 'path'), q.path || '');
        const sc = cell(tr, 'status');
        setText(sc, fmtInt(q.status));
        setClass(sc, 'num' + (isNum(q.status) ? ' s' + Math.floor(q.status / 100) : ''));
        setText(cell(tr, 'ms'), isNum(q.us) ? fmtMs(q.us / 1000) : fmtMs(q.ms));
        setText(cell(tr, 'error'), q.error || '');
      });
    show($('recent-empty'), list.length === 0);
  }

  // ---- confirmation dialog ---------------------------------------------------------------
  // opts.okClass: the OK button's look ('danger' red, 'warn' amber, '' the accent);
  // opts.typed: the text to type before OK is enabled (the id of what is removed).
  function confirmAction(title, text, okLabel, opts) {
    const o = opts || {};
    const dlg = $('confirm');
    setText($('confirm-title'), title);
    setText($('confirm-text'), text);
    setText($('confirm-ok'), okLabel);
    setClass($('confirm-ok'), o.okClass || '');
    const input = $('confirm-input');
    input.value = '';
    show($('confirm-type'), !!o.typed);
    setText($('confirm-input-label'), o.typed ? 'Type “' + o.typed + '” to confirm' : '');
    const typedOk = () => !o.typed || input.value.trim() === o.typed;
    $('confirm-ok').disabled = !typedOk();
    const onInput = () => { $('confirm-ok').disabled = !typedOk(); };
    const onKey = (ev) => { if (ev.key === 'Enter' && typedOk()) { ev.preventDefault(); onOk(); } };
    input.addEventListener('input', onInput);
    input.addEventListener('keydown', onKey);
    const opener = document.activeElement;
    return new Promise((resolve) => {
      const done = (ok) => {
        $('confirm-ok').removeEventListener('click', onOk);
        $('confirm-cancel').removeEventListener('click', onCancel);
        input.removeEventListener('input', onInput);
        input.removeEventListener('keydown', onKey);
        dlg.removeEventListener('close', onClose);
        if (dlg.open) dlg.close();
        if (opener && opener.focus) opener.focus();
        resolve(ok);
      };
      const onOk = () => { if (typedOk()) done(true); };
      const onCancel = () => done(false);
      const onClose = () => done(false); // Escape
      $('confirm-ok').addEventListener('click', onOk);
      $('confirm-cancel').addEventListener('click', onCancel);
      dlg.addEventListener('close', onClose);
      if (typeof dlg.showModal === 'function') {
        dlg.showModal();
        (o.typed ? input : $('confirm-cancel')).focus();
      } else {
        done(window.confirm(title + '\n\n' + text) && (!o.typed || window.prompt('Type ' + o.typed + ' to confirm') === o.typed));
      }
    });
  }

  $('house-toggle').addEventListener('click', async () => {
    if (!current) return;
    const id = current.id;
    const disable = !current.disabled;
    const ok = await confirmAction(
      (disable ? 'Disable' : 'Enable') + ' house ' + id + '?',
      disable
        ? 'A bridge holding it closes its connection, and it is refused until enabled again. Its requests wait in Redis until their deadline (504).'
        : 'The house may connect again at its next attempt.',
      disable ? 'Disable' : 'Enable', { okClass: disable ? 'warn' : '' });
    if (!ok) return;
    try {
      const r = await api('POST', '/api/houses/' + encodeURIComponent(id) + '/' + (disable ? 'disable' : 'enable'), {});
      setNotice('House ' + id + (r.disabled ? ' disabled.' : ' enabled.'));
      if (current && current.id === id) current.disabled = !!r.disabled;
      tick();
    } catch (e) {
      if (handleError(e)) setBanner((disable ? 'Disable' : 'Enable') + ' failed: ' + e.message);
    }
  });

  $('house-remove').addEventListener('click', async () => {
    if (!current) return;
    const id = current.id;
    const ok = await confirmAction('Remove house ' + id + '?',
      'Its registry entry, secret, live state, fencing epoch, recent requests and request history are deleted and it can no longer connect: this cannot be undone (adding it again makes a new secret). Its request stream is kept. To stop it for a while, Disable it instead.',
      'Remove', { okClass: 'danger', typed: id });
    if (!ok) return;
    try {
      const r = await api('DELETE', '/api/houses/' + encodeURIComponent(id));
      rates.delete('h:' + id);
      tunRates.delete('t:' + id);
      setNotice('House ' + id + ' removed' + (isNum(r.pending) && r.pending > 0 ? ' (' + r.pending + ' entries kept in its request stream).' : '.'));
      location.hash = '#/';
    } catch (e) {
      if (handleError(e)) setBanner('Remove failed: ' + e.message);
    }
  });

  // ---- add a house -----------------------------------------------------------------------
  // What this bridge listens on (GET /api/listeners), for the house's command line.
  let listeners = null;
  async function loadListeners() {
    try {
      listeners = await api('GET', '/api/listeners');
    } catch (_) {
      listeners = null; // the hint says it could not be read
    }
  }
  const ANY = ['', '0.0.0.0', '::', '[::]'];
  const LOOPBACK = /^(localhost|127\.|::1$|\[::1\]$)/;
  // The house's command line from the bridge's listeners: rudp first (with the bridges' public
  // key) when there is one, then ws/wss as its fallback; the host is the address bound, or when
  // the bridge listens on every address this page's host (its own name when the page is
  // reached through a loopback address), which the note says to check.
  function connectHint(id, l) {
    const base = 'ghostport-house --id ' + id + ' --secret-file house.secret';
    const up = ' --upstream http://127.0.0.1:8080';
    const houses = l && Array.isArray(l.listeners) ? l.listeners.filter((x) => x && x.kind === 'house') : [];
    if (!houses.length)
      return { cmd: base + ' --bridge wss://BRIDGE:8443/' + up, note: 'The bridge\'s listeners could not be read: put its address for BRIDGE and its --listen port.' };
    const pageHost = location.hostname;
    let guessed = false;
    const hostOf = (x) => {
      if (!ANY.includes(String(x.bind))) return x.bind.includes(':') ? '[' + x.bind + ']' : x.bind;
      guessed = true;
      if (!LOOPBACK.test(pageHost) || !l.host) return pageHost.includes(':') ? '[' + pageHost + ']' : pageHost;
      return l.host;
    };
    const order = houses.slice().sort((a, b) => (a.scheme === 'rudp' ? 0 : 1) - (b.scheme === 'rudp' ? 0 : 1));
    let args = '';
    for (const x of order) {
      if (x.scheme === 'rudp') args += ' --bridge rudp://' + hostOf(x) + ':' + x.port + (x.key ? ' --bridge-key ' + x.key : '');
      else args += ' --bridge ' + x.scheme + '://' + hostOf(x) + ':' + x.port + '/';
    }
    const what = order.map((x) => x.scheme + ' on ' + (ANY.includes(String(x.bind)) ? 'every address' : x.bind) + ', port ' + x.port).join('; ');
    let note = 'Bridge ' + l.bridge + ' listens for houses: ' + what + '.';
    if (guessed) note += ' The host shown is ' + (LOOPBACK.test(pageHost) && l.host ? 'the bridge\'s host name' : 'this page\'s') + ': use the name houses reach the bridge by.';
    if (order.some((x) => x.scheme === 'ws')) note += ' ws:// is plain text (the bridge runs without --tls-cert): for tests only.';
    if (order.length > 1) note += ' The house tries the bridges in this order.';
    return { cmd: base + args + up, note };
  }

  const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
  function parseLabels(text) {
    const labels = {};
    for (const part of text.split(/[\n,]/)) {
      const p = part.trim();
      if (!p) continue;
      const eq = p.indexOf('=');
      if (eq <= 0) throw new Error('Label “' + p + '” is not key=value.');
      const k = p.slice(0, eq).trim(), v = p.slice(eq + 1).trim();
      if (!k) throw new Error('Label “' + p + '” has no key.');
      labels[k] = v;
    }
    return labels;
  }
  function addError(msg, field) {
    setText($('add-error'), msg);
    show($('add-error'), !!msg);
    for (const f of ['add-id', 'add-labels']) $(f).removeAttribute('aria-invalid');
    if (field) { $(field).setAttribute('aria-invalid', 'true'); $(field).focus(); }
  }
  function clearSecret() {
    setText($('secret'), '');
    setText($('add-result-id'), '');
    setText($('add-hint'), '');
    setText($('add-hint-note'), '');
    setText($('copy-status'), '');
    show($('add-result'), false);
    show($('add-form'), true);
  }

  $('add-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const id = $('add-id').value.trim();
    if (!ID_RE.test(id)) {
      addError('The id must be 1–64 characters of letters, digits, “_”, “.” or “-”.', 'add-id');
      return;
    }
    let labels;
    try { labels = parseLabels($('add-labels').value); } catch (e) { addError(e.message, 'add-labels'); return; }
    addError('');
    const btn = $('add-submit');
    btn.disabled = true;
    try {
      const r = await api('POST', '/api/houses', { id, labels });
      if (typeof r.secret !== 'string') throw new ApiError(200, 'bad_json', 'The bridge did not return a secret.');
      $('add-form').reset();
      show($('add-form'), false);
      setText($('add-result-id'), r.id || id);
      setText($('secret'), r.secret);
      const hint = connectHint(r.id || id, listeners);
      setText($('add-hint'), hint.cmd);
      setText($('add-hint-note'), hint.note);
      setText($('copy-status'), '');
      show($('add-result'), true);
      $('copy-secret').focus();
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || (e.status === 403 && e.code !== 'admin_disabled'))) handleError(e);
      else addError(e.message, e.status === 409 || e.status === 400 ? 'add-id' : null);
    } finally {
      btn.disabled = false;
    }
  });

  $('copy-secret').addEventListener('click', async () => {
    const secret = $('secret').textContent;
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(secret);
        ok = true;
      }
    } catch (_) { ok = false; }
    if (!ok) { // plain http on a management network: select it for Ctrl+C
      const range = document.createRange();
      range.selectNodeContents($('secret'));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
    }
    setText($('copy-status'), ok ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C to copy.');
  });

  $('add-done').addEventListener('click', () => {
    clearSecret();
    location.hash = '#/';
  });

  // ---- start -----------------------------------------------------------------------------
  if (window.GPHistory)
    window.GPHistory.init({
      api, fmtMs, fmtBytes, fmtInt, isNum,
      // a refused token signs out (as the polls do); anything else: the panel says so, retries
      onError: (e) => (e.status === 401 || e.status === 403 ? handleError(e) : true),
    });
  buildHouseHeader();
  window.addEventListener('hashchange', onRoute);
  onRoute();
})();
