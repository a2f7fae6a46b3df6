#!/usr/bin/env node
// Headless Chromium walk through the admin panel (issue 12).
//
// Usage: node admin.mjs <panel_url, e.g. http://127.0.0.1:PORT/admin/> <screenshot_dir>
// Environment: ADMIN_TOTP_SECRET (base32 TOTP secret of owner "alice"), ADMIN_PASSWORD (alice's
// and victor's password), VIEWER_PASSWORD (viewer "vera"), CHROMIUM (default /usr/bin/chromium).
//
// The caller has created: owner alice with TOTP on, viewer vera, admin victor, and a paid order
// PANEL-ORDER-42 whose merchant answers callbacks. Checks: TOTP login (the code is computed here,
// RFC 6238 with node's HMAC-SHA1), the dashboard, a reload signs in again through the refresh
// cookie, finding the order by order_id and resending its callback, adding a wallet, creating a
// merchant and seeing its secret once, every page renders, the phone layout, a viewer sees no
// write controls, and 5 bad passwords lock an account with a visible message. No request may
// leave the panel's host, and no CSP violation or page error may occur. Exits 1 with a FAIL line.

import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, shots] = process.argv.slice(2);
if (!url || !shots) {
  console.error('usage: node admin.mjs <panel_url> <screenshot_dir>');
  process.exit(2);
}
const SECRET = process.env.ADMIN_TOTP_SECRET;
const PASSWORD = process.env.ADMIN_PASSWORD;
const VIEWER_PASSWORD = process.env.VIEWER_PASSWORD;
if (!SECRET || !PASSWORD || !VIEWER_PASSWORD) {
  console.error('ADMIN_TOTP_SECRET, ADMIN_PASSWORD and VIEWER_PASSWORD must be set');
  process.exit(2);
}

class AssertionFailed extends Error {}
const fail = (m) => { throw new AssertionFailed(m); };
const T = 20_000;

function base32(s) {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, buf = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    const v = A.indexOf(c);
    if (v < 0) fail(`bad base32 digit ${c}`);
    buf = (buf << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buf >> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

// RFC 6238: HMAC-SHA1 over the big-endian 30-second step, dynamic truncation, 6 digits.
function totp(secret, unix) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unix / 30)));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const off = mac[19] & 0x0f;
  const bin = ((mac[off] & 0x7f) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

let current = null; // the page being driven, for the failure report

async function newPage(browser, host, problems, phone) {
  const context = await browser.newContext(phone
    ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'en-US' }
    : { viewport: { width: 1280, height: 860 }, locale: 'en-US' });
  const page = await context.newPage();
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (!['data:', 'blob:', 'about:'].includes(u.protocol) && u.host !== host) problems.push(`foreign request ${req.url()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message || err}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) problems.push(`CSP: ${msg.text()}`);
  });
  page.on('dialog', (d) => d.accept());
  current = page;
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `admin-${name}.png`), fullPage: true });
}

async function nav(page, name) {
  await page.click(`#nav a[data-page="${name}"]`);
  await page.waitForSelector(`#page[data-page="${name}"] h1`, { timeout: T });
  await page.waitForFunction(() => !document.querySelector('#page p.muted')?.textContent.startsWith('Loading'), null, { timeout: T });
}

async function login(page, username, password, code) {
  await page.waitForSelector('#login-view:not([hidden])', { timeout: T });
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  if (code) await page.fill('#login-totp', code);
  await page.click('#login-submit');
}

async function text(page, sel) {
  return (await page.textContent(sel, { timeout: T })) || '';
}

async function main() {
  const host = new URL(url).host;
  const problems = [];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    // --- owner, desktop ------------------------------------------------------------------------
    const { context, page } = await newPage(browser, host, problems, false);
    const resp = await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
    const csp = resp.headers()['content-security-policy'] || '';
    if (!csp.includes("script-src 'self'")) fail(`CSP missing or weak: ${csp}`);
    await login(page, 'alice', PASSWORD);
    await page.waitForSelector('#login-totp-row:not([hidden])', { timeout: T });
    await shot(page, 'login-totp');
    // The enrolment used the current step's code: use the next step's (±1 step is accepted).
    await page.fill('#login-totp', totp(SECRET, Date.now() / 1000 + 30));
    await page.click('#login-submit');
    await page.waitForSelector('#page[data-page="dashboard"] #stat-cards', { timeout: T });
    await page.waitForSelector('#page svg.chart rect.chart-bar', { timeout: T });
    if (!(await text(page, '#who')).includes('alice')) fail('the header does not name alice');
    await shot(page, 'dashboard');

    // A reload signs in again with the HttpOnly refresh cookie (the access token was in memory).
    const cookies = await context.cookies();
    const rc = cookies.find((c) => c.name === 'epusdt_admin_refresh');
    if (!rc || !rc.httpOnly || rc.sameSite !== 'Strict' || rc.path !== '/admin/api/v1/auth') fail(`bad refresh cookie ${JSON.stringify(rc)}`);
    if (await page.evaluate(() => document.cookie.includes('epusdt_admin_refresh'))) fail('the refresh cookie is readable from script');
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('#page[data-page="dashboard"] #stat-cards', { timeout: T });

    // Orders: find by order_id, open, resend the callback.
    await nav(page, 'orders');
    await page.fill('#orders-q', 'PANEL-ORDER-42');
    await page.click('#orders-filter button[type="submit"]');
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#orders-list tbody tr');
      return rows.length === 1 && rows[0].textContent.includes('PANEL-ORDER-42');
    }, null, { timeout: T });
    await page.click('#orders-list a.order-link');
    await page.waitForSelector('#resend-callback', { timeout: T });
    await page.click('#resend-callback');
    await page.waitForFunction(() => document.querySelector('#order-message')?.textContent.includes('Callback queued'), null, { timeout: T });
    await shot(page, 'orders');
    if (!(await text(page, '#orders-list')).includes('1000')) fail('the orders list does not show the merchant pid');

    // Resolve: PANEL-OTHER-7 was paid short; credit that transfer with a reason.
    await page.fill('#orders-q', 'PANEL-OTHER-7');
    await page.click('#orders-filter button[type="submit"]');
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#orders-list tbody tr');
      return rows.length === 1 && rows[0].textContent.includes('PANEL-OTHER-7');
    }, null, { timeout: T });
    await page.click('#orders-list a.order-link');
    await page.waitForSelector('#resolve-form #resolve-transfer option[value]:not([value=""])', { state: 'attached', timeout: T });
    await page.click('#resolve-credit');
    await page.waitForFunction(() => /reason is required/i.test(document.querySelector('#resolve-message')?.textContent || ''), null, { timeout: T });
    await page.fill('#resolve-reason', 'payer sent the rest by bank transfer (ticket 981)');
    await page.click('#resolve-credit');
    await page.waitForFunction(() => /credited; order paid, callback queued/.test(document.querySelector('#resolve-message')?.textContent || ''), null, { timeout: T });
    if (!(await text(page, '#order-detail')).includes('credited')) fail('the transfer is not shown as credited');
    await shot(page, 'order-resolve');

    // Wallets: add one.
    await nav(page, 'wallets');
    await page.selectOption('#wallet-network', 'ethereum');
    await page.fill('#wallet-address', '0x00000000000000000000000000000000000000bb');
    await page.fill('#wallet-label', 'panel wallet');
    await page.click('#wallet-add button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#wallet-message')?.textContent.includes('Wallet added'), null, { timeout: T });
    if (!(await text(page, '#page table')).includes('panel wallet')) fail('the new wallet is not listed');
    await shot(page, 'wallets');
    // "Used by": the orders of one wallet.
    await page.click('#page tr:has-text("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t") a[href^="/admin/orders?address="]');
    await page.waitForFunction(() => document.querySelector('#orders-address')?.value === 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t'
      && (document.querySelector('#orders-list')?.textContent || '').includes('PANEL-ORDER-42'), null, { timeout: T });

    // Merchants: create one, the secret is shown once.
    await nav(page, 'merchants');
    await page.fill('#merchant-name', 'Panel Shop');
    await page.click('#merchant-create button[type="submit"]');
    await page.waitForSelector('#merchant-secret .secret-value', { timeout: T });
    const secret = (await text(page, '#merchant-secret .secret-value')).trim();
    if (secret.length < 16) fail(`merchant secret too short: "${secret}"`);
    if (!(await text(page, '#page table')).includes('Panel Shop')) fail('the new merchant is not listed');
    await shot(page, 'merchants');
    await nav(page, 'wallets');
    await nav(page, 'merchants');
    await page.selectOption('#page table tr:last-child select[id^="sign-"]', 'md5');
    await page.waitForFunction(() => /set to md5/.test(document.querySelector('#merchant-message')?.textContent || ''), null, { timeout: T });
    if (await page.$('#merchant-secret')) fail('the merchant secret is shown again');
    if ((await page.content()).includes(secret)) fail('the merchant secret is still in the page');
    // Settings: an IP allow-list and its own rate limit; a bad entry is refused with the reason.
    await page.click('#page table tr:has-text("Panel Shop") button.settings');
    await page.fill('#merchant-allowlist', '10.0.0.0/8\n999.1.1.1');
    await page.click('#merchant-settings button[type="submit"]');
    await page.waitForFunction(() => /999\.1\.1\.1/.test(document.querySelector('#merchant-settings-message')?.textContent || ''), null, { timeout: T });
    await page.fill('#merchant-allowlist', '10.0.0.0/8\n192.0.2.7');
    await page.fill('#merchant-rate-limit', '30');
    await shot(page, 'merchant-settings');
    await page.click('#merchant-settings button[type="submit"]');
    await page.waitForFunction(() => /saved/.test(document.querySelector('#merchant-message')?.textContent || ''), null, { timeout: T });
    const row = await text(page, '#page table tr:has-text("Panel Shop")');
    if (!row.includes('10.0.0.0/8') || !row.includes('192.0.2.7/32') || !row.includes('30')) fail(`merchant settings not shown: ${row}`);
    // Rotate with an overlap: the new secret once, and until when the old one still works.
    await page.click('#page table tr:has-text("Panel Shop") button.rotate');
    await page.waitForSelector('#merchant-secret .secret-value', { timeout: T });
    const rotated = await text(page, '#merchant-secret');
    if (!/old secret is accepted until \d{4}-\d\d-\d\d/.test(rotated)) fail(`rotation does not tell the overlap: ${rotated}`);
    if (!(await text(page, '#page table tr:has-text("Panel Shop")')).match(/\d{4}-\d\d-\d\d \d\d:/)) fail('the old secret\'s end is not listed');
    await shot(page, 'merchant-rotated');

    // Every other page renders.
    await nav(page, 'rates');
    await shot(page, 'rates');
    await nav(page, 'admins');
    if (!(await text(page, '#page table')).includes('vera')) fail('admins page lacks vera');
    // Link vera's Telegram account (the bot then acts for her, read-only) with notices on.
    await page.fill('#tg-vera', '424242');
    await page.check('#tg-notify-vera');
    await page.click('#page tr:has-text("vera") form.tg-link button[type="submit"]');
    await page.waitForFunction(() => /linked to 424242/.test(document.querySelector('#admin-message')?.textContent || ''), null, { timeout: T });
    if ((await page.inputValue('#tg-vera')) !== '424242' || !(await page.isChecked('#tg-notify-vera'))) fail('the Telegram link is not shown after saving');
    await shot(page, 'admins');
    await nav(page, 'audit');
    await page.waitForSelector('#audit-list table', { timeout: T });
    const audit = await text(page, '#audit-list');
    for (const a of ['wallet.add', 'merchant.add', 'order.resend', 'order.resolve_credit', 'merchant.update', 'merchant.rotate']) if (!audit.includes(a)) fail(`audit log lacks ${a}`);
    await shot(page, 'audit');
    await nav(page, 'chains');
    await shot(page, 'chains');
    await nav(page, 'account');
    await shot(page, 'account');
    await page.click('#logout');
    await page.waitForSelector('#login-view:not([hidden])', { timeout: T });
    await context.close();

    // --- phone layout (as the viewer: alice's next TOTP step may not have begun yet) --------------
    const phone = await newPage(browser, host, problems, true);
    await phone.page.goto(url, { waitUntil: 'load' });
    await login(phone.page, 'vera', VIEWER_PASSWORD);
    await phone.page.waitForSelector('#page[data-page="dashboard"] #stat-cards', { timeout: T });
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 2) fail(`the phone layout scrolls sideways by ${overflow}px`);
    await shot(phone.page, 'dashboard-phone');
    await nav(phone.page, 'orders');
    await shot(phone.page, 'orders-phone');
    await phone.context.close();

    // --- viewer: no write controls -------------------------------------------------------------
    const v = await newPage(browser, host, problems, false);
    await v.page.goto(url, { waitUntil: 'load' });
    await login(v.page, 'vera', VIEWER_PASSWORD);
    await v.page.waitForSelector('#page[data-page="dashboard"] #stat-cards', { timeout: T });
    for (const p of ['admins', 'audit']) {
      if (await v.page.isVisible(`#nav a[data-page="${p}"]`)) fail(`a viewer sees the ${p} link`);
    }
    await nav(v.page, 'orders');
    await v.page.fill('#orders-q', 'PANEL-ORDER-42');
    await v.page.click('#orders-filter button[type="submit"]');
    await v.page.waitForSelector('#orders-list a.order-link', { timeout: T });
    await v.page.click('#orders-list a.order-link');
    await v.page.waitForSelector('#order-detail h2', { timeout: T });
    if (await v.page.$('#resend-callback')) fail('a viewer sees "Resend callback"');
    for (const p of ['merchants', 'wallets', 'rates']) {
      await nav(v.page, p);
      const writes = await v.page.$$('#page .write, #page form.inline, #page table select');
      if (writes.length) fail(`a viewer sees ${writes.length} write control(s) on ${p}`);
      if (p === 'merchants') await shot(v.page, 'viewer-merchants');
    }
    await v.context.close();

    // --- an initial password must be changed first ----------------------------------------------
    const n = await newPage(browser, host, problems, false);
    await n.page.goto(url, { waitUntil: 'load' });
    await login(n.page, 'nadia', VIEWER_PASSWORD);
    await n.page.waitForSelector('#page[data-page="account"] #password-form', { timeout: T });
    if (!(await text(n.page, '#password-form h2')).includes('Choose your own password')) fail('no forced password change');
    await n.page.click('#nav a[data-page="orders"]');
    await n.page.waitForSelector('#page[data-page="account"] #password-form', { timeout: T });
    await shot(n.page, 'change-password');
    await n.page.fill('#pw-current', VIEWER_PASSWORD);
    await n.page.fill('#pw-new', 'my-own-choice-2026!');
    await n.page.click('#password-form button[type="submit"]');
    await n.page.waitForSelector('#page[data-page="orders"] #orders-filter', { timeout: T });
    // TOTP set-up: a QR code (a data: image, allowed by the CSP) and the secret; confirm a code.
    await nav(n.page, 'account');
    await n.page.click('#totp-begin');
    await n.page.waitForSelector('#totp-qr', { timeout: T });
    if (!(await n.page.evaluate(() => document.querySelector('#totp-qr').complete && document.querySelector('#totp-qr').naturalWidth > 0))) fail('the TOTP QR code did not load');
    const nadiaSecret = (await text(n.page, '#totp-secret .secret-value')).trim();
    await shot(n.page, 'totp-setup');
    await n.page.fill('#totp-code', totp(nadiaSecret, Date.now() / 1000));
    await n.page.click('#totp-box button[type="submit"]');
    await n.page.waitForFunction(() => (document.querySelector('#page')?.textContent || '').includes('Two-factor authentication is on'), null, { timeout: T });
    await n.context.close();

    // --- lockout after 5 bad passwords ---------------------------------------------------------
    const l = await newPage(browser, host, problems, false);
    await l.page.goto(url, { waitUntil: 'load' });
    for (let i = 0; i < 5; i++) {
      await login(l.page, 'victor', 'not-the-password-' + i);
      await l.page.waitForFunction((n) => document.querySelector('#login-error')?.textContent.includes('Wrong username or password') && !document.querySelector('#login-submit').disabled, i, { timeout: T });
      await l.page.evaluate(() => { document.querySelector('#login-error').textContent = ''; });
    }
    await login(l.page, 'victor', PASSWORD);
    await l.page.waitForFunction(() => /locked/i.test(document.querySelector('#login-error')?.textContent || ''), null, { timeout: T });
    await shot(l.page, 'lockout');
    await l.context.close();

    if (problems.length) fail(problems.join('\n'));
    console.log(`OK admin panel: screenshots in ${shots}`);
  } catch (e) {
    try { if (current) console.error(`page text: ${await current.textContent('body', { timeout: 1000 })}`); } catch (_) { /* closed */ }
    throw e;
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  console.error(`FAIL: ${err instanceof AssertionFailed ? err.message : (err && err.stack) || err}`);
  process.exit(1);
});
