// Drive headless Chromium (Debian's `chromium`, through playwright-core; no browser download)
// through ASF's browser test pages (tests/clients/browser/) and print what each page reported.
//
// Usage: node browser.js [--chromium /usr/bin/chromium] [--timeout SECONDS] [--screenshot PNG]
//        PAGE_URL...
// Each page is opened in a fresh browser context of one browser, one after the other; the page
// leaves its report in window.asfReport. For each page one JSON line is printed:
//   {"event": "report", "url": URL, "data": REPORT, "console": [page console lines]}
// or, when the page did not report within --timeout (default 30) seconds,
//   {"event": "timeout", "url": URL, "console": [...]}.
// --screenshot PNG saves the page as a PNG once it reported (one page only).
// Exit codes: 0 every page reported, 2 Chromium could not be started, 4 a page timed out,
// 64 bad usage. Must not: judge the reports; the Rust test does.
'use strict';

const fs = require('fs');
const { chromium } = require('playwright-core');
const { emitLine, exitWith } = require('./common');

// Flags that let Chromium run headless in a container with no network but loopback: without
// the background-networking ones, its own connections to Google services are refused and
// logged. Playwright adds --headless and a fresh temporary --user-data-dir (removed on close).
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

function parse(argv) {
  const opts = { chromium: '/usr/bin/chromium', timeout: 30, screenshot: null, pages: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--chromium' || arg === '--timeout' || arg === '--screenshot') {
      const value = argv[i + 1];
      if (value === undefined) throw new Error(`${arg} needs a value`);
      opts[arg.slice(2)] = arg === '--timeout' ? Number(value) : value;
      i += 1;
    } else if (arg.startsWith('--')) {
      throw new Error(`unknown option ${arg}`);
    } else {
      opts.pages.push(arg);
    }
  }
  if (opts.pages.length === 0 || !(opts.timeout > 0)) {
    throw new Error('usage: browser.js [--chromium PATH] [--timeout SECONDS] [--screenshot PNG] '
      + 'PAGE_URL...');
  }
  if (opts.screenshot && opts.pages.length !== 1) {
    throw new Error('--screenshot takes exactly one PAGE_URL');
  }
  return opts;
}

async function visit(browser, url, timeoutMs, screenshot) {
  // A screenshot is for the README: a smaller window than the default 1280x720.
  const context = await browser.newContext(screenshot ? { viewport: { width: 1100, height: 400 } } : {});
  const consoleLines = [];
  try {
    const page = await context.newPage();
    page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => consoleLines.push(`pageerror: ${err.message}`));
    await page.goto(url, { timeout: timeoutMs });
    try {
      const handle = await page.waitForFunction(() => window.asfReport, null, { timeout: timeoutMs });
      const data = await handle.jsonValue();
      if (screenshot) await page.screenshot({ path: screenshot });
      emitLine({ event: 'report', url, data, console: consoleLines });
      return true;
    } catch (e) {
      emitLine({ event: 'timeout', url, error: e.message, console: consoleLines });
      return false;
    }
  } finally {
    await context.close();
  }
}

async function run() {
  let opts;
  try {
    opts = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    return 64;
  }
  if (!fs.existsSync(opts.chromium)) {
    process.stderr.write(`${opts.chromium} is missing: install Debian's chromium package `
      + '(apt-get install chromium; scripts/test does it when run as root)\n');
    return 2;
  }
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: opts.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: opts.timeout * 1000,
    });
  } catch (e) {
    process.stderr.write(`cannot start ${opts.chromium}: ${e.message}\n`);
    return 2;
  }
  let code = 0;
  try {
    emitLine({ event: 'browser', version: browser.version() });
    for (const url of opts.pages) {
      if (!(await visit(browser, url, opts.timeout * 1000, opts.screenshot))) code = 4;
    }
  } finally {
    await browser.close();
  }
  return code;
}

run().then(exitWith, (e) => {
  process.stderr.write(`browser.js: ${e.stack || e}\n`);
  exitWith(1);
});
