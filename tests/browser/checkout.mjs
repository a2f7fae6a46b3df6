#!/usr/bin/env node
// Headless Chromium check of the server-rendered checkout page.
//
// Usage:
//   node checkout.mjs <checkout_url> <screenshot.png> <expected_amount> <expected_address>
//   node checkout.mjs <checkout_url> <screenshot.png> <expected_amount> <expected_address> --expect-paid-redirect <url>
//   node checkout.mjs <page_url> <screenshot.png> --closed <paid|expired|cancelled|not_found>
//
// Opens the page at a phone viewport, checks the stable element ids (and that the
// transaction-hash box answers a malformed hash with the server's message), that no
// request leaves the page's own host, and saves a full-page screenshot.
// With --expect-paid-redirect it then waits (20 s at most) for the page to turn
// "paid" and navigate to <url>; the caller marks the order paid meanwhile, and
// a second screenshot of the paid state is saved next to the first one
// (<name>-paid.png). Exits 1 with a FAIL line on any failed assertion, 2 on
// bad usage.
//
// Environment: CHROMIUM (default /usr/bin/chromium).

import { chromium } from 'playwright-core';

const USAGE = [
  'usage: node checkout.mjs <checkout_url> <screenshot.png> <expected_amount> <expected_address> [--expect-paid-redirect <url>]',
  '       node checkout.mjs <page_url> <screenshot.png> --closed <paid|expired|cancelled|not_found>',
].join('\n');
const CLOSED_STATES = ['paid', 'expired', 'cancelled', 'not_found'];
const PAID_TIMEOUT_MS = 20_000;

class AssertionFailed extends Error {}

function fail(message) {
  throw new AssertionFailed(message);
}

function usage(message) {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

function parseArgs(argv) {
  const positional = [];
  const opts = { closed: null, paidRedirect: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--closed' || arg === '--expect-paid-redirect') {
      const value = argv[++i];
      if (value === undefined || value.startsWith('--')) usage(`${arg} needs a value`);
      if (arg === '--closed') opts.closed = value;
      else opts.paidRedirect = value;
    } else if (arg === '-h' || arg === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else if (arg.startsWith('--')) {
      usage(`unknown option ${arg}`);
    } else {
      positional.push(arg);
    }
  }
  const [url, screenshot, amount, address] = positional;
  if (!url || !screenshot) usage('missing <url> or <screenshot.png>');
  if (opts.closed !== null) {
    if (!CLOSED_STATES.includes(opts.closed)) usage(`--closed must be one of ${CLOSED_STATES.join(', ')}`);
    if (opts.paidRedirect !== null) usage('--closed and --expect-paid-redirect cannot be combined');
    if (positional.length > 2) usage('--closed takes no expected amount/address');
  } else if (amount === undefined || address === undefined || positional.length > 4) {
    usage('expected exactly <checkout_url> <screenshot.png> <expected_amount> <expected_address>');
  }
  let pageUrl;
  try {
    pageUrl = new URL(url);
  } catch {
    usage(`not a URL: ${url}`);
  }
  if (opts.paidRedirect !== null) {
    try {
      opts.paidRedirect = new URL(opts.paidRedirect, pageUrl).href;
    } catch {
      usage(`not a URL: ${opts.paidRedirect}`);
    }
  }
  return { url: pageUrl.href, screenshot, amount, address, ...opts };
}

function siblingPath(file, suffix) {
  const dot = file.toLowerCase().endsWith('.png') ? file.length - 4 : file.length;
  return `${file.slice(0, dot)}${suffix}.png`;
}

async function textOf(page, selector) {
  const el = await page.$(selector);
  if (!el) fail(`element ${selector} not found`);
  return ((await el.textContent()) ?? '').trim();
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const pageHost = new URL(args.url).host;
  const allowedHosts = new Set([pageHost]);
  if (args.paidRedirect) allowedHosts.add(new URL(args.paidRedirect).host);

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      locale: 'en-US',
    });
    const page = await context.newPage();

    const foreign = [];
    const pageErrors = [];
    const cspErrors = [];
    page.on('request', (req) => {
      let u;
      try {
        u = new URL(req.url());
      } catch {
        foreign.push(req.url());
        return;
      }
      if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return;
      if (!allowedHosts.has(u.host)) foreign.push(req.url());
    });
    page.on('pageerror', (err) => pageErrors.push(String(err && err.message ? err.message : err)));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) cspErrors.push(msg.text());
    });

    const response = await page.goto(args.url, { waitUntil: 'load', timeout: 30_000 });
    if (!response) fail(`no response for ${args.url}`);
    const ctype = response.headers()['content-type'] || '';
    if (!/text\/html/i.test(ctype)) fail(`${args.url} answered with content-type "${ctype}", expected text/html`);
    if (args.closed === null && !response.ok()) fail(`${args.url} answered HTTP ${response.status()}`);

    const robots = await page.$('meta[name="robots"][content~="noindex"]');
    if (!robots) fail('missing <meta name="robots" content="noindex">');

    if (args.closed !== null) {
      const el = await page.$(`#status[data-state="${args.closed}"]`);
      if (!el) {
        const actual = await page.$eval('#status', (s) => s.getAttribute('data-state')).catch(() => null);
        fail(`expected #status[data-state="${args.closed}"], found ${actual === null ? 'no #status' : `data-state="${actual}"`}`);
      }
    } else {
      const amount = await textOf(page, '#amount');
      if (amount !== args.amount) fail(`#amount is "${amount}", expected "${args.amount}"`);
      const address = await textOf(page, '#address');
      if (address !== args.address) fail(`#address is "${address}", expected "${args.address}"`);
      const network = await textOf(page, '#network');
      if (!network) fail('#network is empty');
      if (!(await page.$('#qr svg'))) fail('#qr does not contain an <svg>');
      const countdown = await textOf(page, '#countdown');
      if (!/^\d{1,3}:\d{2}$/.test(countdown)) fail(`#countdown is "${countdown}", expected mm:ss`);
      const state = await page.$eval('#status', (s) => s.getAttribute('data-state')).catch(() => null);
      if (state !== 'waiting') fail(`#status data-state is "${state}", expected "waiting"`);
      for (const sel of ['#amount', '#address', '#qr', '#copy-amount', '#copy-address']) {
        if (!(await page.isVisible(sel))) fail(`${sel} is not visible`);
      }

      try {
        await page.click('#copy-amount', { timeout: 5_000 });
        await page.click('#copy-address', { timeout: 5_000 });
      } catch (err) {
        fail(`clicking a copy button threw: ${err.message}`);
      }
      try {
        await page.waitForFunction(
          () => document.querySelector('#copy-amount .copy-label')?.textContent !== 'Copy',
          null,
          { timeout: 3_000 },
        );
        const label = await textOf(page, '#copy-amount .copy-label');
        if (label !== 'Copied') console.warn(`warning: #copy-amount showed "${label}" (clipboard unavailable here?)`);
      } catch {
        fail('#copy-amount gave no feedback after a click');
      }
      // The "I have paid — here is my transaction hash" box: shown by the script, it posts
      // the hash and shows the server's verdict (a malformed one: the 10009 message).
      if (!(await page.isVisible('#txh'))) fail('#txh (transaction hash box) is not visible');
      try {
        await page.click('#txh summary', { timeout: 5_000 });
        await page.fill('#txh-input', '0xnot-a-hash', { timeout: 5_000 });
        await page.click('#txh-submit', { timeout: 5_000 });
        await page.waitForSelector('#txh-result[data-ok="0"]', { timeout: 10_000 });
      } catch (err) {
        fail(`the transaction hash box did not answer: ${err.message}`);
      }
      const verdict = await textOf(page, '#txh-result');
      if (!verdict.includes('block_transaction_id')) fail(`#txh-result is "${verdict}", expected the server's format error`);
      // Let the feedback settle back to "Copy" so the screenshot shows the resting state.
      await page.mouse.move(0, 0);
      await page.evaluate(() => document.activeElement && document.activeElement.blur && document.activeElement.blur());
      await page.waitForFunction(
        () => document.querySelector('#copy-address .copy-label')?.textContent === 'Copy',
        null,
        { timeout: 5_000 },
      ).catch(() => {});
      await page.waitForTimeout(400);
    }

    await page.screenshot({ path: args.screenshot, fullPage: true });

    if (args.paidRedirect) {
      const deadline = Date.now() + PAID_TIMEOUT_MS;
      try {
        await page.waitForSelector('#status[data-state="paid"]', { timeout: PAID_TIMEOUT_MS });
        await page.screenshot({ path: siblingPath(args.screenshot, '-paid'), fullPage: true });
      } catch {
        if (page.url() !== args.paidRedirect) {
          const state = await page.$eval('#status', (s) => s.getAttribute('data-state')).catch(() => null);
          fail(`page did not turn paid within ${PAID_TIMEOUT_MS / 1000} s (#status data-state="${state}")`);
        }
      }
      try {
        await page.waitForURL((u) => u.href === args.paidRedirect, {
          timeout: Math.max(1, deadline - Date.now()),
          waitUntil: 'commit',
        });
      } catch {
        fail(`no navigation to ${args.paidRedirect} within ${PAID_TIMEOUT_MS / 1000} s (page is at ${page.url()})`);
      }
    }

    if (pageErrors.length) fail(`script errors on the page:\n  ${pageErrors.join('\n  ')}`);
    if (cspErrors.length) fail(`Content-Security-Policy violations:\n  ${cspErrors.join('\n  ')}`);
    if (foreign.length) fail(`requests left ${pageHost}:\n  ${[...new Set(foreign)].join('\n  ')}`);

    const mode = args.closed !== null ? `closed page (${args.closed})` : args.paidRedirect ? 'checkout + paid redirect' : 'checkout';
    console.log(`OK ${mode}: ${args.url} -> ${args.screenshot}`);
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  if (err instanceof AssertionFailed) {
    console.error(`FAIL: ${err.message}`);
  } else {
    console.error(`FAIL: ${err && err.stack ? err.stack : err}`);
  }
  process.exit(1);
});
