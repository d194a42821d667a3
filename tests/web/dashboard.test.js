// Browser test of the bridge's dashboard (bridge/admin/web/) in Debian's headless chromium, driven by
// playwright-core. Run by tests/integration/web.c against a real bridge, house and upstream:
//
//   node tests/web/dashboard.test.js URL TOKEN HOUSE TRANSPORT OUTDIR [PATH_PREFIX] [MIN_REQUESTS]
//
// URL: the bridge's admin port (http://127.0.0.1:P/); HOUSE: a registered, connected house
// whose transport the table must show as TRANSPORT; its recent requests must hold at least
// MIN_REQUESTS (default 3) entries whose path starts with PATH_PREFIX (default "/"), sent
// before. Screenshots (dashboard.png at the end, house.png, narrow.png, fail.png on failure)
// go to OUTDIR. Exit status 0 when every step passed, 1 on a failed step (the step and why on
// stderr), 2 when the browser cannot run (playwright-core or chromium missing, launch failed):
// never a silent skip. Every wait is bounded. Environment: GP_CHROMIUM (default
// /usr/bin/chromium), GP_WEB_TIMEOUT_S (whole run, default 170), GP_WEB_STOP_REDIS_FILE (at
// the end, create this file, expect the caller to stop Redis then, and the page to say
// "Redis unavailable").
'use strict';

const fs = require('fs');
const path = require('path');
const { cannotRun, loadChromium, withBrowser, until: untilIn, settle } = require('./browser');

const [url, token, house, transport, outDir, pathPrefix = '/', minReqArg = '3'] = process.argv.slice(2);
if (!url || !token || !house || !transport || !outDir) {
  console.error('usage: node dashboard.test.js URL TOKEN HOUSE TRANSPORT OUTDIR [PATH_PREFIX] [MIN_REQUESTS]');
  process.exit(2);
}
const minRequests = Number(minReqArg) || 1;
const ADDED = 'web-added-' + process.pid; // the house the form adds (and the test removes)
const TOTAL_S = Number(process.env.GP_WEB_TIMEOUT_S) || 170;
const STOP_REDIS_FILE = process.env.GP_WEB_STOP_REDIS_FILE || '';
// A house with the L3 tunnel (its live state written as a bridge with --tun writes it, its
// counters moving) and its first address: its row and page must show the tunnel's figures.
const L3_HOUSE = process.env.GP_WEB_L3_HOUSE || '';
const L3_ADDR = process.env.GP_WEB_L3_ADDR || '';
// The URL a house dials this bridge at: the "add a house" hint must say it.
const BRIDGE_URL = process.env.GP_WEB_BRIDGE_URL || '';

const t0 = Date.now();
const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
const chromium = loadChromium();

fs.mkdirSync(outDir, { recursive: true });
const watchdog = setTimeout(() => {
  console.error(`FAIL: the whole browser test took longer than ${TOTAL_S}s`);
  process.exit(1);
}, TOTAL_S * 1000);

let step = 'start';
let page = null;
const pageErrors = [];

async function main() {
  step = 'launch chromium';
  await withBrowser(chromium, { width: 1280, height: 860 }, run);
}

// Waits until fn(arg) is truthy in the page (every 100 ms); on timeout fails with `what`.
const until = (what, fn, arg, timeoutMs) => untilIn(page, what, fn, arg, timeoutMs, 100);
const text = (sel) => page.locator(sel).first().textContent({ timeout: 5000 });
const rowSel = (id) => `#houses tbody tr[data-id="${id}"]`;
const cellText = (id, col) => text(`${rowSel(id)} td[data-col="${col}"]`);
async function rowState(id) {
  return page.evaluate((sel) => {
    const tr = document.querySelector(sel);
    return tr ? tr.querySelector('td[data-col="state"]').textContent : null;
  }, rowSel(id));
}
// Confirms the open dialog with its button `label`, which must look like `cls` ('warn' amber,
// 'danger' red, '' the accent); with `typed`, the button is disabled until that is typed.
async function confirmDialog(label, cls, typed) {
  await page.locator('#confirm').waitFor({ state: 'visible', timeout: 5000 });
  const ok = page.locator('#confirm-ok');
  const got = await ok.textContent();
  if (got !== label) throw new Error(`confirmation button says "${got}", want "${label}"`);
  const klass = (await ok.getAttribute('class')) || '';
  if (klass !== (cls || '')) throw new Error(`confirmation button "${label}" has class "${klass}", want "${cls || ''}"`);
  if (typed) {
    if (!(await page.locator('#confirm-input').isVisible())) throw new Error('no field to type the id in');
    if (!(await ok.isDisabled())) throw new Error(`"${label}" is enabled before the id is typed`);
    await page.fill('#confirm-input', typed + 'x');
    if (!(await ok.isDisabled())) throw new Error(`"${label}" is enabled with a wrong id typed`);
    await page.fill('#confirm-input', typed);
    await until(`"${label}" enabled once the id is typed`, () => !document.getElementById('confirm-ok').disabled, null, 3000);
  } else if (await page.locator('#confirm-input').isVisible()) {
    throw new Error(`"${label}" asks for the id to be typed`);
  }
  await ok.click();
  await page.locator('#confirm').waitFor({ state: 'hidden', timeout: 5000 });
}

// The request history panel `sel` (#hist-overview, #hist-house): its summary's request count
// once it is at least n and its requests chart has bars.
async function historyShows(sel, n, what) {
  await until(what, ([s, min]) => {
    const p = document.querySelector(s);
    const m = /: ([\d,]+) requests?/.exec(p ? p.querySelector('.hist-summary').textContent : '');
    const svg = p && p.querySelector('figure[data-chart="requests"] svg');
    return m && Number(m[1].replace(/,/g, '')) >= min && svg && svg.querySelectorAll('rect.bar').length > 0;
  }, [sel, n], 20000);
  return text(sel + ' .hist-summary');
}
// The points (hover areas) of chart `key` in panel `sel`.
const chartPoints = (sel, key) => page.evaluate(([s, k]) =>
  document.querySelectorAll(`${s} figure[data-chart="${k}"] svg rect.hit`).length, [sel, key]);

async function run(context) {
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(10000);
  page.on('pageerror', (e) => pageErrors.push('page error: ' + e.message));
  page.on('console', (m) => {
    // Failed API calls (401/403 on purpose) log "Failed to load resource": only CSP
    // violations and script errors count.
    if (m.type() === 'error' && /Content Security Policy|Uncaught|TypeError|ReferenceError/.test(m.text()))
      pageErrors.push('console: ' + m.text());
  });
  const origin = new URL(url).origin;
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin }).catch(() => {});

  step = 'open the dashboard';
  log(`${step}: ${url}`);
  await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  await page.locator('#view-login').waitFor({ state: 'visible' });
  if ((await page.title()).indexOf('Ghost Port') < 0) throw new Error('title: ' + (await page.title()));

  step = 'a wrong token shows the error';
  log(step);
  await page.fill('#token-input', 'not-' + token);
  await page.press('#token-input', 'Enter'); // the keyboard, not a click
  await until('"Wrong token" under the token field',
    () => /Wrong token/.test(document.getElementById('login-error').textContent), null, 10000);
  if (await page.locator('#view-overview').isVisible()) throw new Error('overview shown with a wrong token');
  if (await page.evaluate(() => Object.keys(sessionStorage).length) !== 0)
    throw new Error('a refused token was kept in sessionStorage');

  step = 'sign in with the token';
  log(step);
  await page.fill('#token-input', token);
  await page.click('#login-submit');
  await page.locator('#view-overview').waitFor({ state: 'visible' });
  if (page.url().includes(token)) throw new Error('the token appears in the URL');

  step = `house ${house} shows as online over ${transport}`;
  log(step);
  await until(step, ([sel, tr]) => {
    const row = document.querySelector(sel);
    return row && row.querySelector('td[data-col="state"]').textContent === 'online' &&
      row.querySelector('td[data-col="transport"]').textContent === tr &&
      row.querySelector('td[data-col="bridge"]').textContent !== '–';
  }, [rowSel(house), transport], 20000);
  await until('a bridge in the bridges table', () => document.querySelectorAll('#bridges tbody tr').length > 0,
    null, 10000);
  log(`  bridge=${await cellText(house, 'bridge')} since=${await cellText(house, 'since')} ` +
    `rtt=${await cellText(house, 'rtt')}`);

  step = 'the overview\'s request history: all bridges, the last hour, then 24 h and one bridge';
  log(step);
  log('  ' + await historyShows('#hist-overview', minRequests, 'the history of all bridges shows requests'));
  for (const key of ['requests', 'errors', 'latency', 'bytes'])
    if ((await chartPoints('#hist-overview', key)) !== 60) throw new Error(`chart ${key} does not have 60 points for 1 h`);
  const legend = await text('#hist-overview figure[data-chart="bytes"] .legend');
  if (!/to the house \(request bodies\)/.test(legend) || !/from the house \(response bodies\)/.test(legend))
    throw new Error('the bytes chart does not name its directions: ' + legend);
  await page.screenshot({ path: path.join(outDir, 'overview.png'), fullPage: true });
  await page.click('#hist-overview .hist-range button[data-range="24h"]');
  await until('the 24 h view: 144 points of 10 minutes', () =>
    document.querySelectorAll('#hist-overview figure[data-chart="requests"] svg rect.hit').length === 144 &&
    /Last 24 hours/.test(document.querySelector('#hist-overview .hist-summary').textContent), null, 10000);
  log('  ' + await text('#hist-overview .hist-summary'));
  await page.screenshot({ path: path.join(outDir, 'overview-24h.png'), fullPage: true });
  const bridgeId = await cellText(house, 'bridge');
  await page.selectOption('#hist-overview-scope', bridgeId);
  await until(`the history of bridge ${bridgeId} alone (not the synthetic day of b-l3)`, () =>
    /Last 24 hours: \d requests?/.test(document.querySelector('#hist-overview .hist-summary').textContent), null, 10000);
  log(`  bridge ${bridgeId}: ` + await text('#hist-overview .hist-summary'));
  await page.selectOption('#hist-overview-scope', '');
  await page.click('#hist-overview .hist-range button[data-range="1h"]');

  step = 'filter box';
  log(step);
  await page.fill('#filter', 'no-such-house-xyz');
  await until('filter hides every row', () => document.querySelectorAll('#houses tbody tr').length === 0 &&
    !document.getElementById('houses-empty').hidden, null, 5000);
  await page.fill('#filter', house);
  await until('filter shows the house', (sel) => !!document.querySelector(sel), rowSel(house), 5000);
  await page.fill('#filter', '');

  step = 'sort by column (keyboard)';
  log(step);
  const stateBtn = page.locator('#houses thead button[data-sort="state"]');
  await stateBtn.focus();
  await page.keyboard.press('Enter');
  await until('state column sorted ascending', () =>
    document.querySelector('#houses th[data-col="state"]').getAttribute('aria-sort') === 'ascending', null, 3000);
  await page.keyboard.press('Enter');
  await until('state column sorted descending', () =>
    document.querySelector('#houses th[data-col="state"]').getAttribute('aria-sort') === 'descending', null, 3000);
  await page.locator('#houses thead button[data-sort="id"]').click();

  if (L3_HOUSE) {
    step = `house ${L3_HOUSE}: its L3 address and the tunnel's packets and bits per second`;
    log(step);
    await until(step, ([sel, addr]) => {
      const row = document.querySelector(sel);
      const th = document.querySelector('#houses th[data-col="tun"]');
      return row && th && getComputedStyle(th).display !== 'none' &&
        row.querySelector('td[data-col="tun"]').textContent === addr &&
        /^[1-9][0-9.]* \/ [1-9]/.test(row.querySelector('td[data-col="tpps"]').textContent) &&
        /^[1-9][0-9.]*[kM] \/ [1-9][0-9.]*[kM]$/.test(row.querySelector('td[data-col="tbps"]').textContent);
    }, [rowSel(L3_HOUSE), L3_ADDR], 20000);
    log(`  pkt/s ${await cellText(L3_HOUSE, 'tpps')}, ${await cellText(L3_HOUSE, 'tbps')}`);
    for (const col of ['tun', 'tpps', 'tbps']) {
      const plain = await cellText(house, col);
      if (plain !== '–') throw new Error(`house ${house} has no tunnel, its ${col} cell says "${plain}"`);
    }

    step = `house ${L3_HOUSE}'s page: address, routes, packets, bytes, drops, FEC repairs`;
    log(step);
    await page.click(`${rowSel(L3_HOUSE)} td[data-col="id"] a`);
    const dd = (f) => `#house-details dd[data-field="${f}"]`;
    await until(step, (addr) => {
      const v = (f) => {
        const n = document.querySelector(`#house-details dd[data-field="${f}"]`);
        return n ? n.textContent : '';
      };
      return v('L3 address') === addr + ', fd7a:6770::7 (up)' && v('L3 routes') === '10.1.2.0/24' &&
        /^\d+ \/ \d+ \([1-9][0-9.]* \/ [1-9][0-9.]* per s\)$/.test(v('L3 packets in / out')) &&
        /^[\d.]+ [KM]iB \/ [\d.]+ [KM]iB \([1-9][\d.]* [kM]bit\/s \/ [1-9][\d.]* [kM]bit\/s\)$/.test(v('L3 bytes in / out')) && v('L3 drops') === '3' &&
        v('FEC repaired') === '7' && v('Loss') === '1.5 %';
    }, L3_ADDR, 15000);
    log(`  ${await text(dd('L3 packets in / out'))}; ${await text(dd('L3 bytes in / out'))}`);
    await page.screenshot({ path: path.join(outDir, 'l3.png'), fullPage: true });
    // Its day of history (written by the test as its bridge would have): the 24 h view.
    await page.click('#hist-house .hist-range button[data-range="24h"]');
    log('  ' + await historyShows('#hist-house', 1000, `house ${L3_HOUSE}'s day of history`));
    await page.screenshot({ path: path.join(outDir, 'house-24h.png'), fullPage: true });
    await page.click('#hist-house .hist-range button[data-range="1h"]');
    await page.click('a[href="#/"] >> nth=0');
    await page.locator(rowSel(house)).waitFor({ state: 'visible' });
  }

  step = 'the house page lists its recent requests';
  log(step);
  await page.click(`${rowSel(house)} td[data-col="id"] a`);
  await until('the house page', (id) => location.hash === '#/house/' + encodeURIComponent(id) &&
    document.getElementById('house-state').textContent === 'online', house, 10000);
  await until(`${minRequests} recent requests with a path under ${pathPrefix}`, ([prefix, n]) => {
    const rows = Array.from(document.querySelectorAll('#recent tbody tr')).filter((tr) =>
      tr.querySelector('td[data-col="path"]').textContent.startsWith(prefix) &&
      tr.querySelector('td[data-col="method"]').textContent === 'GET' &&
      tr.querySelector('td[data-col="status"]').textContent === '200' &&
      / (µs|ms|s)$/.test(tr.querySelector('td[data-col="ms"]').textContent));
    return rows.length >= n;
  }, [pathPrefix, minRequests], 15000);
  const first = await page.locator('#recent tbody tr').first().innerText();
  log(`  newest: ${first.replace(/\s+/g, ' ')}`);
  const tr = await text('#house-details dd[data-field="Transport"]');
  if (tr !== transport) throw new Error(`details say transport "${tr}", want "${transport}"`);
  step = 'the house\'s request history holds the requests sent before the page opened';
  log(step);
  log('  ' + await historyShows('#hist-house', minRequests, `${minRequests} requests in the house's history`));
  await until('its latency chart has a p50 line or point', () =>
    !!document.querySelector('#hist-house figure[data-chart="latency"] svg .p50'), null, 5000);
  if (!/p50 [\d.]+ (µs|ms|s) · p99 [\d.]+ (µs|ms|s)/.test(await text('#hist-house .hist-summary')))
    throw new Error('the summary has no p50/p99: ' + await text('#hist-house .hist-summary'));
  const lat = await page.locator('#recent tbody tr td[data-col="ms"]').first().textContent();
  if (/^0 ms$/.test(lat)) throw new Error('a latency shows as "0 ms"');
  log(`  newest latency ${lat}`);
  await page.screenshot({ path: path.join(outDir, 'house.png'), fullPage: true });

  step = 'disable (amber, unlike Remove in red): the house drops';
  log(step);
  if ((await text('#house-toggle')) !== 'Disable') throw new Error('no Disable button');
  const look = await page.evaluate(() => {
    const st = (id) => getComputedStyle(document.getElementById(id));
    return { dis: st('house-toggle').borderColor, disBg: st('house-toggle').backgroundColor,
      rm: st('house-remove').backgroundColor, cls: document.getElementById('house-toggle').className };
  });
  if (look.cls !== 'warn' || look.dis === look.rm || look.disBg === look.rm)
    throw new Error('Disable looks like Remove: ' + JSON.stringify(look));
  log(`  Disable: border ${look.dis}, background ${look.disBg}; Remove: ${look.rm}`);
  await page.click('#house-toggle');
  await confirmDialog('Disable', 'warn');
  await until('house page shows it disabled and offline', () =>
    document.getElementById('house-state').textContent === 'disabled' &&
    document.querySelector('#house-details dd[data-field="Transport"]').textContent === '–', null, 20000);
  await page.click('a[href="#/"] >> nth=0');
  await until('its row shows disabled, not connected', (sel) => {
    const row = document.querySelector(sel);
    return row && row.querySelector('td[data-col="state"]').textContent === 'disabled' &&
      row.querySelector('td[data-col="transport"]').textContent === '–' && row.classList.contains('is-disabled');
  }, rowSel(house), 10000);
  log(`  row: ${(await page.locator(rowSel(house)).innerText()).replace(/\s+/g, ' ')}`);

  step = 'enable: the house comes back';
  log(step);
  await page.click(`${rowSel(house)} td[data-col="id"] a`);
  await until('Enable button', () => document.getElementById('house-toggle').textContent === 'Enable' &&
    !document.getElementById('house-toggle').disabled, null, 5000);
  await page.click('#house-toggle');
  await confirmDialog('Enable', '');
  // A house refused as disabled dials again every 2-3 s: back within seconds.
  await until('house connected again', () =>
    document.getElementById('house-state').textContent === 'online', null, 20000);
  log(`  reconnected over ${await text('#house-details dd[data-field="Transport"]')}`);

  step = 'add a house through the form';
  log(step);
  await page.click('#nav-add');
  await page.locator('#view-add').waitFor({ state: 'visible' });
  await page.fill('#add-id', 'bad id');
  await page.click('#add-submit');
  await until('a bad id is refused', () => /1–64 characters/.test(document.getElementById('add-error').textContent),
    null, 3000);
  await page.fill('#add-id', ADDED);
  await page.fill('#add-labels', 'site=web\nkind=test');
  await page.click('#add-submit');
  await until('the secret is shown', () => /^[0-9a-f]{64}$/.test(document.getElementById('secret').textContent),
    null, 10000);
  const secret = await text('#secret');
  await page.click('#copy-secret');
  await until('copy confirmed', () => document.getElementById('copy-status').textContent !== '', null, 3000);
  const copied = await page.evaluate(() => navigator.clipboard.readText().catch(() => null));
  log(`  secret ${secret.slice(0, 8)}… (64 hex); copy: ${await text('#copy-status')}` +
    (copied === null ? '' : copied === secret ? ' (clipboard holds it)' : ' (clipboard differs!)'));
  if (copied !== null && copied !== secret) throw new Error('the clipboard does not hold the secret');
  const hint = await text('#add-hint');
  log(`  hint: ${hint}`);
  log(`  ${await text('#add-hint-note')}`);
  if (!hint.includes('--id ' + ADDED) || (BRIDGE_URL && !hint.includes('--bridge ' + BRIDGE_URL)))
    throw new Error(`the hint does not name the house and ${BRIDGE_URL}: ${hint}`);
  await page.screenshot({ path: path.join(outDir, 'added.png'), fullPage: true });
  await page.click('#add-done');
  await until('the secret is gone from the page', () => document.getElementById('secret').textContent === '' &&
    location.hash === '#/', null, 3000);
  await until('the added house is listed offline with its labels', (sel) => {
    const row = document.querySelector(sel);
    return row && row.querySelector('td[data-col="state"]').textContent === 'offline' &&
      row.querySelector('.labels').textContent === 'kind=test site=web';
  }, rowSel(ADDED), 10000);

  step = 'adding it twice is refused';
  log(step);
  await page.click('#nav-add');
  await page.fill('#add-id', ADDED);
  await page.click('#add-submit');
  await until('"already exists"', () => /already exists/.test(document.getElementById('add-error').textContent),
    null, 10000);

  step = 'remove the added house';
  log(step);
  await page.click('#nav-overview');
  await page.click(`${rowSel(ADDED)} td[data-col="id"] a`);
  await until('its page', () => !document.getElementById('house-remove').disabled, null, 10000);
  await page.click('#house-remove');
  await page.locator('#confirm').waitFor({ state: 'visible', timeout: 5000 });
  await page.screenshot({ path: path.join(outDir, 'remove-confirm.png') });
  await confirmDialog('Remove', 'danger', ADDED);
  await until('back on the overview without it', (sel) => location.hash === '#/' &&
    document.querySelector('#houses tbody tr') && !document.querySelector(sel) &&
    /removed/.test(document.getElementById('notice').textContent), rowSel(ADDED), 10000);

  step = 'a narrow window';
  log(step);
  await page.setViewportSize({ width: 380, height: 800 });
  await until('no page-wide horizontal scroll at 380 px', () =>
    document.documentElement.scrollWidth <= window.innerWidth + 1, null, 5000);
  await until('the charts drawn again at their new width', () =>
    Array.from(document.querySelectorAll('#hist-overview .chart svg')).every((g) =>
      Math.abs(Number((g.getAttribute('viewBox') || '0 0 0').split(' ')[2]) - g.getBoundingClientRect().width) <= 2), null, 5000);
  await page.screenshot({ path: path.join(outDir, 'narrow.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 860 });

  step = 'final screenshot';
  await until('house connected in the table', (sel) => {
    const row = document.querySelector(sel);
    return row && row.querySelector('td[data-col="state"]').textContent === 'online';
  }, rowSel(house), 10000);
  const shot = path.join(outDir, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  log(`screenshot: ${shot}`);

  step = 'many houses: the table shows the first 500, the count says so';
  log(step);
  const MANY = 520;
  const added = await page.evaluate(async (n) => {
    const tok = sessionStorage.getItem('ghostport.adminToken');
    let ok = 0;
    for (let i = 0; i < n; i += 20) {
      const batch = [];
      for (let j = i; j < Math.min(n, i + 20); j++)
        batch.push(fetch('/api/houses', {
          method: 'POST', headers: { Authorization: 'Bearer ' + tok },
          body: JSON.stringify({ id: 'zz-many-' + String(j).padStart(3, '0') }),
        }).then((r) => r.status === 201));
      ok += (await Promise.all(batch)).filter(Boolean).length;
    }
    return ok;
  }, MANY);
  if (added !== MANY) throw new Error(`added ${added} of ${MANY} houses through the API`);
  await until('500 rows and the count', () =>
    document.querySelectorAll('#houses tbody tr').length === 500 &&
    /^\(\d+; the first 500 shown: filter to narrow\)$/.test(document.getElementById('houses-count').textContent),
  null, 15000);
  log(`  count: ${await text('#houses-count')}`);
  await page.fill('#filter', 'zz-many-51');
  await until('the filter reaches the houses past the first 500', () =>
    document.querySelectorAll('#houses tbody tr').length === 10 &&
    document.querySelector('#houses tbody tr[data-id="zz-many-519"]') !== null, null, 5000);
  await page.fill('#filter', '');

  if (STOP_REDIS_FILE) {
    // The caller stops Redis once this file appears: the page must say so, and keep the table.
    step = 'Redis stopped: "Redis unavailable"';
    log(step);
    fs.writeFileSync(STOP_REDIS_FILE, 'stop redis\n');
    await until('the banner says Redis is unavailable', () =>
      /Redis unavailable/.test(document.getElementById('banner').textContent) &&
      !document.getElementById('banner').hidden, null, 30000);
    if (!(await page.locator(rowSel(house)).isVisible())) throw new Error('the table was cleared');
    log(`  banner: ${await text('#banner')}`);
    await page.screenshot({ path: path.join(outDir, 'redis-down.png'), fullPage: true });
  }

  if (pageErrors.length) throw new Error('errors in the page:\n  ' + pageErrors.join('\n  '));
}

settle(main(), {
  outDir, watchdog, log, pageErrors, step: () => step, page: () => page, more: () => [],
  describe: async (p) => {
    const [banner, hash, text] = await p.evaluate(() => [document.getElementById('banner').textContent,
      location.hash, document.body.innerText.slice(0, 1500)]);
    return '  banner: ' + banner + '\n  hash: ' + hash + '\n  page text:\n' + text;
  },
});
