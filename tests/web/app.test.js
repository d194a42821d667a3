// Browser test of a house's web app reached through the bridge's HTTP front door (README.md,
// "The HTTP front door"), in Debian's headless chromium driven by playwright-core. Run by
// tests/integration/web.c (house_web_app_through_the_front_door) against real processes: the
// house's upstream is tests/web/app_server.js.
//
//   node tests/web/app.test.js URL OUTDIR
//
// URL: the app's page through the front door, http://127.0.0.1:P/h/<house>/ (the trailing
// slash matters: the page's URLs are relative). The page must show, each within a bounded
// wait: in #api the text of its JSON API (./api/hello, a fetch through the door), in #echo
// "hello" (sent over a WebSocket to ./ws, through the door, and echoed by the app), in #live a
// counter the app pushes every 100 ms over that socket, up to >= 5; then the page closes the
// socket and must see the close handshake (#state "closed 1000"). No console errors, no page
// errors. Screenshots to OUTDIR: app.png when done, fail.png on failure. Exit status 0 when
// every step passed, 1 on a failed step (the step and why, and the page's text, on stderr), 2
// when the browser cannot run (playwright-core or chromium missing, launch failed): never a
// silent skip. Environment: GP_CHROMIUM (default /usr/bin/chromium), GP_WEB_TIMEOUT_S (whole
// run, default 60). Same flags and conventions as dashboard.test.js.
'use strict';

const fs = require('fs');
const path = require('path');
const { cannotRun, loadChromium, withBrowser, until: untilIn, settle } = require('./browser');

const API_TEXT = 'Hello from the house\'s web app'; // what tests/web/app_server.js answers
const LIVE_MIN = 5;

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error('usage: node app.test.js URL OUTDIR');
  process.exit(2);
}
const TOTAL_S = Number(process.env.GP_WEB_TIMEOUT_S) || 60;

const t0 = Date.now();
const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
const chromium = loadChromium();

fs.mkdirSync(outDir, { recursive: true });
const watchdog = setTimeout(() => {
  console.error(`FAIL at step "${step}": the whole browser test took longer than ${TOTAL_S}s`);
  process.exit(1);
}, TOTAL_S * 1000);

let step = 'start';
let page = null;
const pageErrors = [];
const sockets = []; // what the browser itself saw of the page's WebSockets

async function main() {
  step = 'launch chromium';
  await withBrowser(chromium, { width: 1024, height: 640 }, run);
}

// Waits until fn(arg) is truthy in the page (every 50 ms); on timeout fails with `what`.
const until = (what, fn, arg, timeoutMs) => untilIn(page, what, fn, arg, timeoutMs, 50);
const text = (id) => page.evaluate((i) => document.getElementById(i).textContent, id);

async function run(context) {
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(10000);
  page.on('pageerror', (e) => pageErrors.push('page error: ' + e.message));
  // Any console error counts here (the app loads nothing that may fail on purpose).
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push('console: ' + m.text());
  });
  page.on('websocket', (ws) => {
    const s = { url: ws.url(), sent: 0, received: 0, closed: false, error: null };
    sockets.push(s);
    ws.on('framesent', () => s.sent++);
    ws.on('framereceived', () => s.received++);
    ws.on('socketerror', (e) => { s.error = String(e); });
    ws.on('close', () => { s.closed = true; });
  });

  step = 'open the page through the front door';
  log(`${step}: ${url}`);
  const resp = await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  if (!resp || resp.status() !== 200)
    throw new Error(`GET ${url}: status ${resp ? resp.status() : '(none)'}`);
  if ((await page.title()) !== 'House web app') throw new Error('title: ' + (await page.title()));

  step = '#api shows the API\'s text (fetch ./api/hello)';
  log(step);
  await until('#api says "' + API_TEXT + '"',
    (want) => document.getElementById('api').textContent === want, API_TEXT, 15000);

  step = '#echo shows "hello" (a WebSocket through the front door)';
  log(step);
  // A socket that failed or closed ends the wait at once (the page says so in #state).
  await until('#echo says "hello"', () => document.getElementById('echo').textContent === 'hello' ||
    /^(closed|error)/.test(document.getElementById('state').textContent), null, 15000);
  if (await text('echo') !== 'hello')
    throw new Error(`the socket ended before the echo: #state "${await text('state')}"`);
  const wsUrl = await text('wsurl');
  const want = new URL('ws', url);
  want.protocol = want.protocol === 'https:' ? 'wss:' : 'ws:';
  if (wsUrl !== want.href) throw new Error(`the page's socket went to ${wsUrl}, want ${want.href}`);
  log(`  socket: ${wsUrl}`);

  step = `#live reaches ${LIVE_MIN} (pushed by the app every 100 ms)`;
  log(step);
  await until(`#live >= ${LIVE_MIN}`,
    (min) => Number(document.getElementById('live').textContent) >= min ||
      /^(closed|error)/.test(document.getElementById('state').textContent), LIVE_MIN, 15000);
  if (await text('state') !== 'open')
    throw new Error(`the socket ended at #live ${await text('live')}: #state "${await text('state')}"`);
  const live1 = Number(await text('live'));
  await until('#live still counting', (was) => Number(document.getElementById('live').textContent) > was,
    live1, 5000);
  log(`  live: ${await text('live')} (state ${await text('state')})`);
  if (await text('state') !== 'open') throw new Error('socket state: ' + (await text('state')));
  await page.screenshot({ path: path.join(outDir, 'app.png'), fullPage: true });

  step = 'the page closes its socket: the close handshake comes back';
  log(step);
  await page.evaluate(() => window.app.close());
  await until('#state says "closed 1000"',
    () => document.getElementById('state').textContent === 'closed 1000', null, 10000);

  step = 'what the browser saw';
  if (sockets.length !== 1) throw new Error(`${sockets.length} WebSockets, want 1`);
  const s = sockets[0];
  log(`  frames sent ${s.sent}, received ${s.received}`);
  if (s.error) throw new Error('socket error: ' + s.error);
  if (s.received < LIVE_MIN + 1) throw new Error(`only ${s.received} frames received`);
  if (pageErrors.length) throw new Error('errors in the page:\n  ' + pageErrors.join('\n  '));
}

settle(main(), {
  outDir, watchdog, log, pageErrors, step: () => step, page: () => page,
  more: () => (sockets.length ? ['sockets: ' + JSON.stringify(sockets)] : []),
  describe: async (p) => '  url: ' + p.url() + '\n  page text:\n' +
    (await p.evaluate(() => document.body.innerText.slice(0, 1500))),
});
