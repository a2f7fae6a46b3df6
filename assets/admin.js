// The epusdt admin panel: a small client over /admin/api/v1 (wiki/ADMIN.md).
// The access token is kept in memory only; the refresh token is an HttpOnly cookie scoped to
// /admin/api/v1/auth, used with the X-Requested-With header (CSRF). Nothing is written as
// HTML markup: every value goes through textContent.
'use strict';

(function () {
  const API = '/admin/api/v1';
  const NETWORKS = ['tron', 'ethereum', 'bsc', 'polygon'];
  const STATUSES = ['waiting', 'paid', 'expired', 'cancelled'];
  const RESOLVABLE = ['late', 'partial', 'overpaid', 'paid_twice', 'unmatched'];
  const S = { token: null, me: null };

  const $ = (id) => document.getElementById(id);

  // h('tag', {attr: v, onclick: fn}, child...) — children are nodes or text.
  function h(tag, attrs, ...kids) {
    const svg = ['svg', 'rect', 'text', 'g', 'line'].includes(tag);
    const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  // Replaces el's children, skipping absent ones (replaceChildren would print "null").
  function fill(el, ...kids) {
    el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
  }

  const canWrite = () => S.me && S.me.role !== 'viewer';
  const isOwner = () => S.me && S.me.role === 'owner';
  const when = (unix) => (unix ? new Date(unix * 1000).toISOString().replace('T', ' ').slice(0, 19) : '—');

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message || code);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  async function raw(method, path, body, auth) {
    const headers = { 'X-Requested-With': 'epusdt-admin' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth && S.token) headers.Authorization = 'Bearer ' + S.token;
    const r = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (!r.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(r.status, e.code || 'http_' + r.status, e.message, r.headers.get('Retry-After'));
    }
    return data;
  }

  // Uses the refresh cookie; true when a new access token is in memory.
  async function refresh() {
    try {
      const t = await raw('POST', '/auth/refresh', {}, false);
      S.token = t.access_token;
      return true;
    } catch (_) {
      S.token = null;
      return false;
    }
  }

  async function api(method, path, body) {
    try {
      return await raw(method, path, body, true);
    } catch (e) {
      if (e.status === 401 && (await refresh())) return raw(method, path, body, true);
      if (e.status === 401) { showLogin(); }
      throw e;
    }
  }

  // ---- layout -------------------------------------------------------------------------------
  function showLogin(message) {
    S.token = null;
    S.me = null;
    $('top').hidden = true;
    $('page').hidden = true;
    $('login-view').hidden = false;
    $('login-error').textContent = message || '';
    if (location.pathname !== '/admin/login') history.replaceState(null, '', '/admin/login');
    $('login-username').focus();
  }

  function go(page, replace) {
    const url = '/admin/' + page;
    if (replace) history.replaceState(null, '', url);
    else if (location.pathname !== url) history.pushState(null, '', url);
    route();
  }

  function currentPage() {
    const p = location.pathname.replace(/^\/admin\/?/, '').split('/')[0];
    return p && p !== 'login' ? p : 'dashboard';
  }

  function banner(node, kind, text) {
    fill(node, h('p', { class: kind, role: kind === 'error' ? 'alert' : 'status', text }));
  }

  function fail(box) {
    return (e) => banner(box, 'error', e.message + (e.code ? ' (' + e.code + ')' : ''));
  }

  async function route() {
    if (!S.me) return;
    let page = currentPage();
    if (S.me.must_change_password || S.me.totp_setup_required) page = 'account';
    if (!PAGES[page]) page = 'dashboard';
    for (const a of document.querySelectorAll('#nav a')) {
      a.classList.toggle('active', a.dataset.page === page);
      const need = a.dataset.role;
      a.hidden = (need === 'owner' && !isOwner()) || (need === 'admin' && !canWrite());
    }
    $('login-view').hidden = true;
    $('top').hidden = false;
    const root = $('page');
    root.hidden = false;
    root.dataset.page = page;
    fill(root, h('p', { class: 'muted', text: 'Loading…' }));
    try {
      await PAGES[page](root);
    } catch (e) {
      if (e.status !== 401) banner(root, 'error', e.message);
    }
  }

  async function afterLogin() {
    S.me = await api('GET', '/me');
    $('who').textContent = S.me.username + ' · ' + S.me.role;
    route();
  }

  function table(cols, rows, rowAttrs) {
    return h('div', { class: 'scroll' },
      h('table', {},
        h('thead', {}, h('tr', {}, cols.map((c) => h('th', { text: c[0] })))),
        h('tbody', {}, rows.map((r, i) => h('tr', rowAttrs ? rowAttrs(r, i) : {}, cols.map((c) => h('td', { 'data-label': c[0] }, c[1](r))))))));
  }

  function field(label, input) {
    return h('label', {}, label, ' ', input);
  }

  function select(id, options, blank) {
    return h('select', { id }, blank !== undefined ? h('option', { value: '', text: blank }) : null,
      options.map((o) => h('option', { value: o, text: o })));
  }

  function secretBox(id, title, value, note) {
    return h('div', { class: 'secret', id },
      h('strong', { text: title }), h('code', { class: 'secret-value', text: value }), h('p', { class: 'muted', text: note }));
  }

  // ---- pages ----------------------------------------------------------------------------------
  function barChart(title, data) {
    const entries = Object.entries(data);
    const max = Math.max(1, ...entries.map(([, v]) => v));
    const W = 320, bar = 22, gap = 10, left = 80;
    const height = Math.max(1, entries.length) * (bar + gap) + gap;
    const svg = h('svg', { viewBox: `0 0 ${W} ${height}`, class: 'chart', role: 'img', 'aria-label': title });
    entries.forEach(([k, v], i) => {
      const y = gap + i * (bar + gap);
      const w = Math.max(1, ((W - left - 70) * v) / max);
      svg.append(h('text', { x: 0, y: y + bar * 0.7, class: 'chart-label', text: k }));
      svg.append(h('rect', { x: left, y, width: w, height: bar, rx: 3, class: 'chart-bar' }));
      svg.append(h('text', { x: left + w + 6, y: y + bar * 0.7, class: 'chart-value', text: String(v) }));
    });
    if (!entries.length) svg.append(h('text', { x: 0, y: 20, class: 'chart-label', text: 'no data' }));
    return h('figure', { class: 'card' }, h('figcaption', { text: title }), svg);
  }

  function volumes(period) {
    const out = {};
    for (const net of NETWORKS) out[net] = 0;
    for (const [net, tokens] of Object.entries(period.paid_volume || {})) {
      out[net] = Object.values(tokens).reduce((a, v) => a + Number(v), 0);
    }
    return out;
  }

  function statusCounts(period) {
    const out = {};
    for (const s of STATUSES) out[s] = Number((period.orders_by_status || {})[s] || 0);
    return out;
  }

  // Orders created per UTC day over the last 7 days, and the paid volume of those orders (USDT),
  // read from /orders (at most 1000 orders; the caption says when there were more).
  async function perDay() {
    const days = {};
    const volume = {};
    const today = Math.floor(Date.now() / 86400000);
    for (let d = today - 6; d <= today; d++) {
      const k = new Date(d * 86400000).toISOString().slice(5, 10);
      days[k] = 0;
      volume[k] = 0;
    }
    let cursor = null;
    let truncated = false;
    for (let page = 0; page < 5; page++) {
      const p = new URLSearchParams({ from: String((today - 6) * 86400), limit: '200' });
      if (cursor) p.set('cursor', cursor);
      const r = await api('GET', '/orders?' + p);
      for (const o of r.orders) {
        const k = new Date(o.created_at * 1000).toISOString().slice(5, 10);
        if (!(k in days)) continue;
        days[k] += 1;
        if (o.status === 'paid') volume[k] = Math.round((volume[k] + Number(o.paid_amount || o.actual_amount)) * 100) / 100;
      }
      cursor = r.next_cursor;
      if (!cursor) break;
      truncated = page === 4;
    }
    return { days, volume, note: truncated ? ' (first 1000 orders)' : '' };
  }

  async function dashboard(root) {
    const s = await api('GET', '/stats');
    const daily = await perDay();
    const rate = (p) => (p.callback_success_rate === null || p.callback_success_rate === undefined ? '—' : Math.round(p.callback_success_rate * 100) + '%');
    const card = (t, v) => h('div', { class: 'card stat' }, h('span', { class: 'muted', text: t }), h('strong', { text: v }));
    const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    fill(root, 
      h('h1', { text: 'Dashboard' }),
      h('div', { class: 'cards', id: 'stat-cards' },
        card('Orders today', sum(statusCounts(s.today))),
        card('Paid today', statusCounts(s.today).paid),
        card('Orders, 7 days', sum(statusCounts(s.last_7_days))),
        card('Callback success, 7 days', rate(s.last_7_days))),
      h('div', { class: 'charts' },
        barChart('Paid volume per network, today (USDT)', volumes(s.today)),
        barChart('Paid volume per network, 7 days (USDT)', volumes(s.last_7_days)),
        barChart('Orders per day (UTC)' + daily.note, daily.days),
        barChart('Paid volume per day (USDT)' + daily.note, daily.volume),
        barChart('Orders by status, 7 days', statusCounts(s.last_7_days)),
        barChart('Scanner lag (blocks)', s.scanner_lag_blocks || {})));
  }

  async function orders(root) {
    const q = h('input', { id: 'orders-q', type: 'search', placeholder: 'order_id, trade_id, address, tx hash' });
    const status = select('orders-status', STATUSES, 'any status');
    const network = select('orders-network', NETWORKS, 'any network');
    const given = new URLSearchParams(location.search);
    const merchant = h('input', { id: 'orders-merchant', inputmode: 'numeric', placeholder: 'pid', size: 6, value: given.get('merchant') || '' });
    const address = h('input', { id: 'orders-address', placeholder: 'exact address', value: given.get('address') || '' });
    const from = h('input', { id: 'orders-from', type: 'date' });
    const to = h('input', { id: 'orders-to', type: 'date' });
    const list = h('div', { id: 'orders-list' });
    const detail = h('div', { id: 'order-detail' });
    let cursor = null;
    let seq = 0; // only the latest search may draw the list
    const day = (input, end) => String(Math.floor(Date.parse(input.value + 'T00:00:00Z') / 1000) + (end ? 86400 : 0));
    const load = async (more) => {
      const p = new URLSearchParams();
      if (q.value.trim()) p.set('q', q.value.trim());
      if (status.value) p.set('status', status.value);
      if (network.value) p.set('network', network.value);
      if (merchant.value.trim()) p.set('merchant', merchant.value.trim());
      if (address.value.trim()) p.set('address', address.value.trim());
      if (from.value) p.set('from', day(from, false));
      if (to.value) p.set('to', day(to, true));
      if (more && cursor) p.set('cursor', cursor);
      const mine = ++seq;
      const r = await api('GET', '/orders?' + p);
      if (mine !== seq) return;
      cursor = r.next_cursor;
      const t = table([
        ['Order', (o) => h('a', { href: '#', class: 'order-link', 'data-trade': o.trade_id, onclick: (e) => { e.preventDefault(); showOrder(o.trade_id, detail); }, text: o.order_id })],
        ['Trade', (o) => o.trade_id],
        ['Merchant', (o) => (o.merchant_pid ?? '—')],
        ['Network', (o) => o.network],
        ['Amount', (o) => o.actual_amount + ' ' + o.token],
        ['Status', (o) => h('span', { class: 'badge ' + o.status, text: o.status })],
        ['Created', (o) => when(o.created_at)],
      ], r.orders);
      fill(list, r.orders.length ? t : h('p', { class: 'muted', text: 'No orders match.' }),
        cursor ? h('button', { type: 'button', onclick: () => load(true).catch(fail(list)), text: 'Next page' }) : null);
    };
    const form = h('form', { class: 'filters', id: 'orders-filter', onsubmit: (e) => { e.preventDefault(); fill(detail, ); load(false).catch(fail(list)); } },
      field('Search', q), field('Status', status), field('Network', network), field('Merchant', merchant),
      field('Address', address), field('From (UTC)', from), field('To (UTC)', to), h('button', { type: 'submit', text: 'Search' }));
    fill(root, h('h1', { text: 'Orders' }), form, detail, list);
    await load(false);
  }

  async function showOrder(tradeId, box) {
    const o = await api('GET', '/orders/' + encodeURIComponent(tradeId));
    const dl = h('dl', { class: 'kv' });
    for (const k of ['order_id', 'trade_id', 'merchant_pid', 'protocol', 'network', 'token', 'amount', 'currency', 'rate', 'actual_amount', 'address', 'status', 'block_transaction_id', 'paid_amount', 'callback_state', 'callback_attempts', 'notify_url', 'redirect_url']) {
      dl.append(h('dt', { text: k }), h('dd', { text: o[k] === null || o[k] === undefined ? '—' : String(o[k]) }));
    }
    dl.append(h('dt', { text: 'created / paid' }), h('dd', { text: when(o.created_at) + ' / ' + when(o.paid_at) }));
    const msg = h('div', { id: 'order-message' });
    const resend = canWrite() && o.status === 'paid'
      ? h('button', { type: 'button', id: 'resend-callback', class: 'write', onclick: async () => {
        try { await api('POST', '/orders/' + encodeURIComponent(tradeId) + '/resend'); banner(msg, 'ok', 'Callback queued.'); } catch (e) { fail(msg)(e); }
      }, text: 'Resend callback' })
      : null;
    fill(box, h('section', { class: 'card detail', id: 'order-' + tradeId },
      h('h2', { text: 'Order ' + o.order_id }), dl, resend, msg,
      h('h3', { text: 'Transfers' }),
      (o.transfers || []).length ? table([['Tx', (t) => t.tx_hash], ['Amount', (t) => t.amount], ['Kind', (t) => h('span', { class: 'badge ' + t.kind, text: t.kind })], ['Block', (t) => t.block_number]], o.transfers) : h('p', { class: 'muted', text: 'none' }),
      resolveForm(o, tradeId, box),
      h('h3', { text: 'Callback attempts' }),
      (o.callback_attempts_log || []).length ? table([['#', (a) => a.attempt], ['At', (a) => when(a.at)], ['HTTP', (a) => a.http_status ?? '—'], ['OK', (a) => (a.success ? 'yes' : 'no')], ['Error', (a) => a.error || '']], o.callback_attempts_log) : h('p', { class: 'muted', text: 'none' })));
  }

  // Credit a late / partial / over-paid / unmatched transfer to this order, or dismiss it
  // (POST /orders/{trade_id}/resolve); the reason is required and goes to the audit log.
  function resolveForm(o, tradeId, box) {
    const open = (o.transfers || []).filter((t) => RESOLVABLE.includes(t.kind));
    if (!canWrite()) return null;
    const pick = h('select', { id: 'resolve-transfer' },
      open.map((t) => h('option', { value: String(t.id), text: t.kind + ' · ' + t.amount + ' · ' + t.tx_hash.slice(0, 18) + '…' })),
      h('option', { value: '', text: 'another transfer, by tx hash' }));
    const tx = h('input', { id: 'resolve-tx', placeholder: 'tx hash (when not listed)', size: 30 });
    const reason = h('input', { id: 'resolve-reason', required: true, maxlength: 500, placeholder: 'why (kept in the audit log)', size: 30 });
    const out = h('div', { id: 'resolve-message' });
    const send = (action) => async () => {
      if (!reason.value.trim()) { banner(out, 'error', 'A reason is required.'); reason.focus(); return; }
      const body = { action, reason: reason.value.trim() };
      if (pick.value) body.transfer_id = Number(pick.value); else body.tx = tx.value.trim();
      if (!pick.value && !body.tx) { banner(out, 'error', 'Pick a transfer or give its tx hash.'); return; }
      const verb = action === 'credit' ? 'Credit this transfer to order ' + o.order_id + '?' : 'Dismiss this transfer?';
      if (!confirm(verb)) return;
      try {
        const r = await api('POST', '/orders/' + encodeURIComponent(tradeId) + '/resolve', body);
        await showOrder(tradeId, box);
        banner($('resolve-message') || out, 'ok', 'Transfer ' + r.transfer_id + ' ' + r.kind + (r.callback === 'queued' ? '; order paid, callback queued.' : '.'));
      } catch (e) { fail(out)(e); }
    };
    return h('form', { class: 'inline write', id: 'resolve-form', onsubmit: (e) => e.preventDefault() },
      h('strong', { text: 'Resolve a transfer' }),
      field('Transfer', pick), field('Tx hash', tx), field('Reason', reason),
      h('button', { type: 'button', id: 'resolve-credit', onclick: send('credit'), text: 'Credit to this order' }),
      h('button', { type: 'button', id: 'resolve-dismiss', class: 'secondary', onclick: send('dismiss'), text: 'Dismiss' }),
      out);
  }

  // Edits one merchant's IP allow-list and own rate limit (PATCH /merchants/{pid}).
  function merchantSettings(m, root, msg) {
    const list = h('textarea', { id: 'merchant-allowlist', rows: 3, cols: 30, placeholder: 'one IP or CIDR per line; empty = any address' });
    list.value = (m.ip_allowlist || []).join('\n');
    const limit = h('input', { id: 'merchant-rate-limit', inputmode: 'numeric', size: 8, placeholder: 'default', value: m.rate_limit_per_minute ?? '' });
    const save = async (e) => {
      e.preventDefault();
      const n = limit.value.trim();
      if (n !== '' && !/^\d+$/.test(n)) { banner(out, 'error', 'Rate limit must be a whole number (0 = unlimited) or empty for the default.'); return; }
      const body = {
        ip_allowlist: list.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean),
        rate_limit_per_minute: n === '' ? null : Number(n),
      };
      try { await api('PATCH', '/merchants/' + m.pid, body); await merchants(root); banner($('merchant-message'), 'ok', 'Settings of ' + m.pid + ' saved.'); } catch (err) { fail(out)(err); }
    };
    const out = h('div', { id: 'merchant-settings-message' });
    return h('form', { class: 'inline write', id: 'merchant-settings', onsubmit: save },
      h('strong', { text: 'Merchant ' + m.pid + ' (' + m.name + ')' }),
      field('IP allow-list', list), field('Requests / minute', limit),
      h('button', { type: 'submit', text: 'Save' }),
      h('button', { type: 'button', class: 'secondary', onclick: () => merchants(root), text: 'Cancel' }), out);
  }

  async function merchants(root) {
    const r = await api('GET', '/merchants');
    const msg = h('div', { id: 'merchant-message' });
    const name = h('input', { id: 'merchant-name', required: true, maxlength: 100 });
    const create = canWrite() ? h('form', { class: 'inline write', id: 'merchant-create', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const m = await api('POST', '/merchants', { name: name.value.trim() });
        await merchants(root);
        fill($('merchant-message'), secretBox('merchant-secret', 'Merchant ' + m.pid + ' secret', m.secret, 'Shown once: copy it now. It is not stored readable and will not be shown again.'));
      } catch (err) { fail(msg)(err); }
    } }, field('New merchant name', name), h('button', { type: 'submit', text: 'Create merchant' })) : null;
    const act = (m) => (canWrite() && m.pid !== 1000 ? h('span', { class: 'actions write' },
      h('button', { type: 'button', class: 'rotate', onclick: async () => {
        const overlap = r.rotation_overlap_secs || 0;
        const ask = overlap > 0 ? 'The old one keeps working for ' + overlap + ' s.' : 'The old one stops working at once.';
        if (!confirm('Rotate the secret of merchant ' + m.pid + '? ' + ask)) return;
        try {
          const s = await api('POST', '/merchants/' + m.pid + '/rotate-secret');
          await merchants(root);
          const until = s.rotation_overlap_until ? 'The old secret is accepted until ' + when(s.rotation_overlap_until) + ' UTC.' : 'The old secret no longer works.';
          fill($('merchant-message'), secretBox('merchant-secret', 'Merchant ' + m.pid + ' new secret', s.secret, 'Shown once: copy it now. ' + until));
        } catch (err) { fail(msg)(err); }
      }, text: 'Rotate secret' }),
      h('button', { type: 'button', class: 'settings', onclick: () => fill(msg, merchantSettings(m, root, msg)), text: 'Settings' }),
      h('button', { type: 'button', onclick: async () => {
        try { await api('PATCH', '/merchants/' + m.pid, { enabled: !m.enabled }); await merchants(root); } catch (err) { fail(msg)(err); }
      }, text: m.enabled ? 'Disable' : 'Enable' })) : '');
    const signMode = (m) => {
      if (!canWrite()) return m.sign_mode || '—';
      const sel = select('sign-' + m.pid, ['dual', 'md5', 'hmac_sha256']);
      sel.value = m.sign_mode || 'dual';
      sel.setAttribute('aria-label', 'GMPay sign mode of ' + m.pid);
      sel.addEventListener('change', async () => {
        try { await api('PATCH', '/merchants/' + m.pid, { sign_mode: sel.value }); banner(msg, 'ok', 'Sign mode of ' + m.pid + ' set to ' + sel.value + '.'); } catch (err) { fail(msg)(err); sel.value = m.sign_mode || 'dual'; }
      });
      return sel;
    };
    fill(root, h('h1', { text: 'Merchants' }), create, msg,
      table([['PID', (m) => m.pid], ['Name', (m) => m.name], ['Enabled', (m) => (m.enabled ? 'yes' : 'no')], ['GMPay sign mode', signMode],
        ['IP allow-list', (m) => ((m.ip_allowlist || []).length ? m.ip_allowlist.join(', ') : 'any')],
        ['Req/min', (m) => (m.rate_limit_per_minute === null || m.rate_limit_per_minute === undefined ? 'default (' + (r.default_rate_limit_per_minute ?? '?') + ')' : m.rate_limit_per_minute === 0 ? 'unlimited' : String(m.rate_limit_per_minute))],
        ['Old secret until', (m) => (m.rotation_overlap_until ? when(m.rotation_overlap_until) : '—')],
        ['', act]], r.merchants));
  }

  async function wallets(root) {
    const r = await api('GET', '/wallets');
    const msg = h('div', { id: 'wallet-message' });
    const network = select('wallet-network', NETWORKS);
    const address = h('input', { id: 'wallet-address', required: true, autocomplete: 'off', spellcheck: 'false' });
    const label = h('input', { id: 'wallet-label', maxlength: 100 });
    const add = canWrite() ? h('form', { class: 'inline write', id: 'wallet-add', onsubmit: async (e) => {
      e.preventDefault();
      const body = { network: network.value, address: address.value.trim() };
      if (label.value.trim()) body.label = label.value.trim();
      try { await api('POST', '/wallets', body); await wallets(root); banner($('wallet-message'), 'ok', 'Wallet added.'); } catch (err) { fail(msg)(err); }
    } }, field('Network', network), field('Address', address), field('Label', label), h('button', { type: 'submit', text: 'Add wallet' })) : null;
    const usedBy = (w) => h('a', { href: '/admin/orders?address=' + encodeURIComponent(w.address), onclick: (e) => {
      e.preventDefault();
      history.pushState(null, '', '/admin/orders?address=' + encodeURIComponent(w.address));
      route();
    }, text: 'Orders' });
    const act = (w) => (canWrite() ? h('span', { class: 'actions write' },
      h('button', { type: 'button', onclick: async () => {
        try { await api('PATCH', '/wallets/' + w.id, { enabled: !w.enabled }); await wallets(root); } catch (err) { fail(msg)(err); }
      }, text: w.enabled ? 'Disable' : 'Enable' }),
      h('button', { type: 'button', onclick: async () => {
        const label = prompt('Label for ' + w.address, w.label || '');
        if (label === null) return;
        try { await api('PATCH', '/wallets/' + w.id, { label: label.trim() }); await wallets(root); } catch (err) { fail(msg)(err); }
      }, text: 'Rename' })) : '');
    fill(root, h('h1', { text: 'Wallets' }), add, msg,
      table([['Network', (w) => w.network], ['Address', (w) => h('code', { text: w.address })], ['Label', (w) => w.label || ''], ['Enabled', (w) => (w.enabled ? 'yes' : 'no')], ['Used by', usedBy], ['', act]], r.wallets));
  }

  async function rates(root) {
    const r = await api('GET', '/rates');
    const msg = h('div', { id: 'rate-message' });
    const cur = h('input', { id: 'rate-currency', required: true, maxlength: 10, placeholder: 'cny' });
    const val = h('input', { id: 'rate-value', required: true, inputmode: 'decimal', placeholder: '7.2' });
    const set = canWrite() ? h('form', { class: 'inline write', id: 'rate-set', onsubmit: async (e) => {
      e.preventDefault();
      try { await api('PUT', '/rates/' + encodeURIComponent(cur.value.trim().toLowerCase()), { rate: val.value.trim() }); await rates(root); banner($('rate-message'), 'ok', 'Rate set.'); } catch (err) { fail(msg)(err); }
    } }, field('Currency', cur), field('Rate (per 1 USDT)', val), h('button', { type: 'submit', text: 'Set rate' })) : null;
    fill(root, h('h1', { text: 'Rates' }), set, msg,
      table([['Currency', (x) => x.currency], ['Rate', (x) => x.rate], ['Source', (x) => x.source]], r.rates));
  }

  async function admins(root) {
    const r = await api('GET', '/admins');
    const msg = h('div', { id: 'admin-message' });
    const name = h('input', { id: 'admin-username', required: true, maxlength: 64 });
    const role = select('admin-role', ['viewer', 'admin', 'owner']);
    const create = h('form', { class: 'inline write', id: 'admin-create', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const a = await api('POST', '/admins', { username: name.value.trim(), role: role.value });
        await admins(root);
        if (a.password) fill($('admin-message'), secretBox('admin-password', 'Initial password for ' + a.admin.username, a.password, 'Shown once; it must be changed at first sign-in.'));
      } catch (err) { fail(msg)(err); }
    } }, field('Username', name), field('Role', role), h('button', { type: 'submit', text: 'Add admin' }));
    const roleSel = (a) => {
      const sel = select('role-' + a.username, ['viewer', 'admin', 'owner']);
      sel.value = a.role;
      sel.setAttribute('aria-label', 'Role of ' + a.username);
      sel.addEventListener('change', async () => {
        try { await api('PATCH', '/admins/' + encodeURIComponent(a.username), { role: sel.value }); await admins(root); } catch (err) { fail(msg)(err); sel.value = a.role; }
      });
      return sel;
    };
    const act = (a) => h('span', { class: 'actions write' },
      roleSel(a),
      h('button', { type: 'button', onclick: async () => {
        try { await api('PATCH', '/admins/' + encodeURIComponent(a.username), { disabled: !a.disabled }); await admins(root); } catch (err) { fail(msg)(err); }
      }, text: a.disabled ? 'Enable' : 'Disable' }),
      a.totp_enabled ? h('button', { type: 'button', onclick: async () => {
        try { await api('POST', '/admins/' + encodeURIComponent(a.username) + '/reset-totp'); await admins(root); } catch (err) { fail(msg)(err); }
      }, text: 'Reset TOTP' }) : null);
    // Telegram: the user id the bot acts for (empty = unlinked) and whether notices go to it.
    const telegram = (a) => {
      const id = h('input', { id: 'tg-' + a.username, inputmode: 'numeric', size: 12, placeholder: 'user id', value: a.telegram_id ?? '' });
      id.setAttribute('aria-label', 'Telegram user id of ' + a.username);
      const notify = h('input', { type: 'checkbox', id: 'tg-notify-' + a.username });
      notify.checked = !!a.tg_notify;
      const save = async (e) => {
        e.preventDefault();
        const v = id.value.trim();
        if (v !== '' && !/^\d+$/.test(v)) { banner(msg, 'error', 'A Telegram user id is a positive number (the bot tells unlinked users theirs).'); return; }
        try {
          await api('PATCH', '/admins/' + encodeURIComponent(a.username), { telegram_id: v === '' ? null : Number(v), tg_notify: notify.checked });
          await admins(root);
          banner($('admin-message'), 'ok', 'Telegram of ' + a.username + (v === '' ? ' unlinked.' : ' linked to ' + v + '.'));
        } catch (err) { fail(msg)(err); }
      };
      return h('form', { class: 'tg-link write', onsubmit: save }, id, h('label', { class: 'check' }, notify, 'notices'), h('button', { type: 'submit', text: 'Save' }));
    };
    fill(root, h('h1', { text: 'Admins' }), create, msg,
      table([['Username', (a) => a.username], ['Role', (a) => a.role], ['TOTP', (a) => (a.totp_enabled ? 'on' : 'off')], ['Disabled', (a) => (a.disabled ? 'yes' : 'no')],
        ['Telegram', (a) => telegram(a)], ['', act]], r.admins));
  }

  async function audit(root) {
    const action = h('input', { id: 'audit-action', placeholder: 'e.g. wallet.add' });
    const actor = h('input', { id: 'audit-actor', placeholder: 'e.g. admin:alice' });
    const list = h('div', { id: 'audit-list' });
    let cursor = null;
    let seq = 0; // only the latest search may draw the list
    const load = async (more) => {
      const p = new URLSearchParams();
      if (action.value.trim()) p.set('action', action.value.trim());
      if (actor.value.trim()) p.set('actor', actor.value.trim());
      if (more && cursor) p.set('cursor', cursor);
      const mine = ++seq;
      const r = await api('GET', '/audit?' + p);
      if (mine !== seq) return;
      cursor = r.next_cursor;
      fill(list, table([['At', (e) => when(e.at)], ['Actor', (e) => e.actor], ['Action', (e) => e.action], ['Target', (e) => e.target], ['IP', (e) => e.ip || '']], r.events),
        cursor ? h('button', { type: 'button', onclick: () => load(true).catch(fail(list)), text: 'Next page' }) : null);
    };
    fill(root, h('h1', { text: 'Audit log' }),
      h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); load(false).catch(fail(list)); } }, field('Action', action), field('Actor', actor), h('button', { type: 'submit', text: 'Filter' })), list);
    await load(false);
  }

  async function chains(root) {
    const r = await api('GET', '/chains');
    const rows = Object.entries(r.chains).map(([net, c]) => Object.assign({ network: net }, c));
    const n = (v) => (v === null || v === undefined ? '—' : String(v));
    fill(root, h('h1', { text: 'Chain status' }),
      rows.length ? table([['Network', (c) => c.network], ['Role', (c) => n(c.role)], ['Head', (c) => n(c.head)], ['Confirmed', (c) => n(c.confirmed_head)], ['Cursor', (c) => n(c.cursor)], ['Lag', (c) => n(c.lag_blocks)], ['Last OK', (c) => when(c.last_ok_unix)], ['Error', (c) => c.error || '']], rows)
        : h('p', { class: 'muted', text: 'No network is being watched.' }));
  }

  async function account(root) {
    const me = S.me;
    const msg = h('div', { id: 'account-message' });
    const cur = h('input', { id: 'pw-current', type: 'password', autocomplete: 'current-password', required: true });
    const next = h('input', { id: 'pw-new', type: 'password', autocomplete: 'new-password', minlength: 12, required: true });
    const pw = h('form', { class: 'stack', id: 'password-form', onsubmit: async (e) => {
      e.preventDefault();
      try {
        const t = await api('POST', '/me/password', { current_password: cur.value, new_password: next.value });
        S.token = t.access_token;
        await afterLogin();
      } catch (err) { fail(msg)(err); }
    } }, h('h2', { text: me.must_change_password ? 'Choose your own password to continue' : 'Change password' }),
      field('Current password', cur), field('New password (12+ characters)', next), h('button', { type: 'submit', text: 'Change password' }));
    const totpBox = h('div', { id: 'totp-box' });
    const code = h('input', { id: 'totp-code', inputmode: 'numeric', maxlength: 6 });
    const totp = me.totp_enabled ? h('p', { text: 'Two-factor authentication is on.' })
      : h('div', { class: 'stack' }, h('h2', { text: me.totp_setup_required ? 'Set up two-factor authentication to continue' : 'Two-factor authentication' }),
        h('button', { type: 'button', id: 'totp-begin', onclick: async () => {
          try {
            const t = await api('POST', '/me/totp');
            fill(totpBox, t.otpauth_qr ? h('img', { id: 'totp-qr', src: t.otpauth_qr, width: 200, height: 200, alt: 'QR code for your authenticator app' }) : null,
              secretBox('totp-secret', 'Or enter this secret in your authenticator app', t.secret, t.otpauth_url),
              h('form', { class: 'inline', onsubmit: async (e) => {
                e.preventDefault();
                try { await api('POST', '/me/totp/confirm', { code: code.value.trim() }); await afterLogin(); } catch (err) { fail(msg)(err); }
              } }, field('Code', code), h('button', { type: 'submit', text: 'Turn on' })));
          } catch (err) { fail(msg)(err); }
        }, text: 'Start set-up' }), totpBox);
    fill(root, h('h1', { text: 'Account' }), msg, me.must_change_password ? pw : totp, me.must_change_password ? null : pw);
  }

  const PAGES = { dashboard, orders, merchants, wallets, rates, admins, audit, chains, account };

  // ---- login ----------------------------------------------------------------------------------
  async function onLogin(e) {
    e.preventDefault();
    const err = $('login-error');
    err.textContent = '';
    const body = { username: $('login-username').value.trim(), password: $('login-password').value };
    const code = $('login-totp').value.trim();
    if (code) body.totp = code;
    $('login-submit').disabled = true;
    try {
      const t = await raw('POST', '/auth/login', body, false);
      S.token = t.access_token;
      $('login-password').value = '';
      $('login-totp').value = '';
      $('login-totp-row').hidden = true;
      if (['/admin', '/admin/', '/admin/login'].includes(location.pathname)) history.replaceState(null, '', '/admin/dashboard');
      await afterLogin();
    } catch (x) {
      if (x.code === 'totp_required') {
        $('login-totp-row').hidden = false;
        $('login-totp').focus();
        err.textContent = 'Enter the code from your authenticator app.';
      } else if (x.code === 'totp_invalid') {
        $('login-totp-row').hidden = false;
        err.textContent = 'That code is wrong or was already used.';
      } else if (x.code === 'locked') {
        const mins = Math.max(1, Math.ceil(Number(x.retryAfter || 900) / 60));
        err.textContent = 'Too many failed sign-ins: this account is locked. Try again in ' + mins + ' minute' + (mins === 1 ? '' : 's') + '.';
      } else if (x.code === 'invalid_credentials') {
        err.textContent = 'Wrong username or password.';
      } else {
        err.textContent = x.message;
      }
    } finally {
      $('login-submit').disabled = false;
    }
  }

  async function onLogout() {
    try { await raw('POST', '/auth/logout', undefined, true); } catch (_) { /* ends anyway */ }
    showLogin('Signed out.');
  }

  document.addEventListener('DOMContentLoaded', async () => {
    $('login-form').addEventListener('submit', onLogin);
    $('logout').addEventListener('click', onLogout);
    $('nav').addEventListener('click', (e) => {
      const a = e.target.closest('a[data-page]');
      if (!a || e.ctrlKey || e.metaKey) return;
      e.preventDefault();
      go(a.dataset.page);
    });
    window.addEventListener('popstate', route);
    if (await refresh()) {
      try {
        if (location.pathname === '/admin/login' || location.pathname === '/admin/' || location.pathname === '/admin') history.replaceState(null, '', '/admin/dashboard');
        await afterLogin();
        return;
      } catch (_) { /* fall through */ }
    }
    showLogin();
  });
})();
