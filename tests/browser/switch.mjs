#!/usr/bin/env node
// Headless Chromium check of the payer's network choice on the checkout page.
//
// Usage:
//   node switch.mjs <placeholder_checkout_url> <screenshot.png> <network> <expected_address>
//
// Opens the page of a placeholder (GMPay order without token/network) at a phone viewport,
// saves a screenshot of the choice, clicks the <network> button and waits for the checkout of
// the order to pay, which must show <expected_address>; saves <name>-chosen.png. Exits 1 with a
// FAIL line on any failed assertion, 2 on bad usage.
//
// Environment: CHROMIUM (default /usr/bin/chromium).

import { chromium } from 'playwright-core';

const [url, shot, network, address] = process.argv.slice(2);
if (!url || !shot || !network || !address) {
  console.error('usage: node switch.mjs <placeholder_checkout_url> <screenshot.png> <network> <expected_address>');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url, { waitUntil: 'load' });
  const button = page.locator(`[data-switch-network="${network}"][data-switch-token="USDT"]`);
  if (await button.count() !== 1) throw new Error(`FAIL: no button for ${network}`);
  await page.screenshot({ path: shot, fullPage: true });
  await Promise.all([
    page.waitForURL((u) => u.pathname.startsWith('/pay/checkout-counter/'), { timeout: 15_000 }),
    button.click(),
  ]);
  await page.waitForSelector('#address', { timeout: 15_000 });
  const shown = (await page.textContent('#address')).trim();
  if (shown !== address) throw new Error(`FAIL: address ${shown}, expected ${address}`);
  await page.screenshot({ path: shot.replace(/\.png$/, '-chosen.png'), fullPage: true });
  if (errors.length) throw new Error(`FAIL: page errors: ${errors.join('; ')}`);
  console.log('OK');
} catch (e) {
  console.log(String(e.message || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
