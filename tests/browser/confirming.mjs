#!/usr/bin/env node
// Headless Chromium check of the checkout page's "confirming" state (check-status 5).
//
// Usage:
//   node confirming.mjs <checkout_url> <screenshot.png> <expected_title_text> [--then <text>]
//
// Opens the page at a phone viewport and waits (30 s at most) for #status to turn
// data-state="confirming" with a title containing <expected_title_text> (e.g.
// "confirming 1/4"), checks the payment details are hidden, and saves a screenshot. With
// --then it waits (30 s) for the title to contain <text> next (the caller confirms the
// payment once the screenshot is on disk). Exits 1 with a FAIL line on a failed check, 2 on
// bad usage.
//
// Environment: CHROMIUM (default /usr/bin/chromium).

import { chromium } from 'playwright-core';

const USAGE = 'usage: node confirming.mjs <checkout_url> <screenshot.png> <expected_title_text> [--then <text>]';
const WAIT_MS = 30_000;

function usage(message) {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

const argv = process.argv.slice(2);
let then = null;
const positional = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--then') {
    then = argv[++i];
    if (then === undefined) usage('--then needs a value');
  } else if (argv[i].startsWith('--')) {
    usage(`unknown option ${argv[i]}`);
  } else {
    positional.push(argv[i]);
  }
}
const [url, screenshot, expected] = positional;
if (!url || !screenshot || !expected || positional.length !== 3) usage('missing arguments');

async function title(page) {
  return ((await page.textContent('#status-title')) ?? '').trim();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err && err.message ? err.message : err)));
  await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
  try {
    await page.waitForFunction(
      (text) => {
        const s = document.querySelector('#status');
        const t = document.querySelector('#status-title');
        return s && s.getAttribute('data-state') === 'confirming' && t && t.textContent.includes(text);
      },
      expected,
      { timeout: WAIT_MS },
    );
  } catch {
    const state = await page.$eval('#status', (s) => s.getAttribute('data-state')).catch(() => null);
    throw new Error(`the page never showed "${expected}" (data-state="${state}", title "${await title(page)}")`);
  }
  if (await page.isVisible('#address')) throw new Error('#address is still shown while confirming');
  if (await page.isVisible('#countdown')) throw new Error('#countdown is still shown while confirming');
  console.log(`confirming: "${await title(page)}" / "${((await page.textContent('#status-detail')) ?? '').trim()}"`);
  await page.screenshot({ path: screenshot, fullPage: true });
  if (then !== null) {
    try {
      await page.waitForFunction(
        (text) => (document.querySelector('#status-title')?.textContent ?? '').includes(text),
        then,
        { timeout: WAIT_MS },
      );
    } catch {
      throw new Error(`the page never showed "${then}" after confirming (title "${await title(page)}")`);
    }
    console.log(`then: "${await title(page)}"`);
  }
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
} catch (err) {
  console.log(`FAIL: ${err.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
