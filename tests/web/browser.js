// browser.js — what the browser tests (dashboard.test.js, app.test.js) share: Debian's headless
// chromium through playwright-core with the flags this machine needs, the exit status 2 when
// the browser cannot run (never a silent skip), a throw-away profile per run, the bounded wait
// for a condition in the page, and the end of a run (PASS, or FAIL with what the page showed).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

const CHROMIUM = process.env.GP_CHROMIUM || '/usr/bin/chromium';
// The flags this machine needs (closed network: no background connections, no QUIC).
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function cannotRun(msg) {
  console.error('FAIL (browser cannot run): ' + msg);
  process.exit(2);
}

// playwright-core's chromium, once checked that both are here.
function loadChromium() {
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch (e) {
    cannotRun('playwright-core is not installed in tests/web/node_modules: run `npm ci` in tests/web ' +
      '(scripts/deps.sh does, `make test` runs it): ' + e.message);
  }
  if (!fs.existsSync(CHROMIUM))
    cannotRun(CHROMIUM + ' not found: install Debian\'s chromium package (scripts/deps.sh does)');
  return chromium;
}

// Runs run(context) in a fresh chromium with a viewport {width, height}; the profile is removed
// and the browser closed whatever run does.
async function withBrowser(chromium, viewport, run) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gp-web-profile-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30000, viewport,
    });
  } catch (e) {
    cannotRun(`${CHROMIUM} did not start: ${e.message.split('\n')[0]}`);
  }
  try {
    await run(context);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

// Waits until fn(arg) is truthy in the page, looking every pollMs; on timeout throws with `what`.
async function until(page, what, fn, arg, timeoutMs, pollMs) {
  try {
    await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: pollMs });
  } catch (e) {
    throw new Error(`${what}: not within ${timeoutMs / 1000}s`);
  }
}

// Ends a browser test once done settles: PASS and exit 0; or FAIL at t.step() and why, the
// page's errors (t.pageErrors) and t.more() lines, then, while the page (t.page()) is still
// there, a screenshot OUTDIR/fail.png (t.outDir) and what t.describe(page) says of it; exit 1.
function settle(done, t) {
  done.then(() => {
    clearTimeout(t.watchdog);
    t.log('PASS');
    process.exit(0);
  }, async (e) => {
    console.error(`FAIL at step "${t.step()}": ${e && e.message ? e.message : e}`);
    for (const line of [...t.pageErrors, ...t.more()]) console.error('  ' + line);
    const page = t.page();
    if (page) {
      try {
        const shot = path.join(t.outDir, 'fail.png');
        await page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
        console.error('  screenshot: ' + shot);
        console.error(await t.describe(page));
      } catch (_) { /* the page is gone */ }
    }
    process.exit(1);
  });
}

module.exports = { CHROMIUM, FLAGS, cannotRun, loadChromium, withBrowser, until, settle };
