var body = document.body;
var statusEl = document.getElementById("status");
var titleEl = document.getElementById("status-title");
var detailEl = document.getElementById("status-detail");
var linkEl = document.getElementById("return-link");
var countdownEl = document.getElementById("countdown");
var timerEl = countdownEl ? countdownEl.parentNode : null;
var clock = (window.performance && performance.now) ? function () { return performance.now(); } : function () { return Date.now(); };
var started = clock();
var state = body.getAttribute("data-state") || "waiting";
var tickTimer = null, pollTimer = null, inFlight = false, stopPolling = false, pollUntil = Infinity;

var TEXT = {
  paid: ["Payment received", CFG.redirectUrl ? "Thank you! Taking you back to the merchant\u2026" : "Thank you! You can close this page now."],
  expired: ["This order has expired", "Do not send any payment to this address. Go back to the shop and create a new order."],
  cancelled: ["This order was cancelled", "Do not send any payment for this order. Go back to the shop if you want to order again."]
};

function pad(n) { return n < 10 ? "0" + n : String(n); }
function remaining() { return Math.max(0, Math.ceil(CFG.remaining - (clock() - started) / 1000)); }

var waitingText = [titleEl.textContent, detailEl.textContent];

/* Status 5: the transfer is in a block but not yet confirmed. Not final: it turns paid at the
   confirmed head, or back to waiting if its block vanishes. */
function setConfirming(seen, needed) {
  if (state === "paid" || state === "cancelled") { return; }
  state = "confirming";
  body.setAttribute("data-state", "confirming");
  statusEl.setAttribute("data-state", "confirming");
  var counts = (seen > 0 && needed > 0) ? " " + seen + "/" + needed : "";
  titleEl.textContent = "Payment seen \u00b7 confirming" + counts;
  detailEl.textContent = "Your transfer is on the chain. The order is paid once it has " + (needed > 0 ? needed + " confirmations" : "enough confirmations") + "; keep this page open, it updates by itself.";
  pollUntil = Infinity;
}

/* The seen transfer is gone (its block was replaced): waiting again, as before it was seen. */
function setWaiting() {
  if (state !== "confirming") { return; }
  state = "waiting";
  body.setAttribute("data-state", "waiting");
  statusEl.setAttribute("data-state", "waiting");
  titleEl.textContent = waitingText[0];
  detailEl.textContent = waitingText[1];
  tick();
}

function setState(next) {
  if (state === next || state === "paid" || state === "cancelled") { return; }
  state = next;
  body.setAttribute("data-state", next);
  statusEl.setAttribute("data-state", next);
  titleEl.textContent = TEXT[next][0];
  detailEl.textContent = TEXT[next][1];
  if (tickTimer !== null) { clearInterval(tickTimer); tickTimer = null; }
  if (CFG.redirectUrl) {
    linkEl.href = CFG.redirectUrl;
    linkEl.textContent = next === "paid" ? "Return to merchant" : "Back to shop";
    linkEl.hidden = false;
  }
  if (next === "paid") {
    stopPolling = true;
    if (CFG.redirectUrl) { setTimeout(function () { window.location.assign(CFG.redirectUrl); }, 2000); }
  } else if (next === "cancelled") {
    stopPolling = true;
  } else if (next === "expired") {
    if (countdownEl) { countdownEl.textContent = "00:00"; }
    /* A transfer sent just before the deadline may still be confirmed: keep asking a little longer. */
    pollUntil = clock() + 120000;
  }
}

function tick() {
  var left = remaining();
  if (countdownEl) { countdownEl.textContent = pad(Math.floor(left / 60)) + ":" + pad(left % 60); }
  if (timerEl) { timerEl.classList.toggle("is-urgent", left <= 60); }
  /* A transfer seen in time may still be credited after the deadline. */
  if (left <= 0 && state !== "confirming") { setState("expired"); }
}

function schedule(delay) {
  if (stopPolling || inFlight || pollTimer !== null || clock() > pollUntil) { return; }
  pollTimer = setTimeout(poll, delay);
}

function poll() {
  pollTimer = null;
  if (stopPolling || clock() > pollUntil) { return; }
  inFlight = true;
  var ctrl = window.AbortController ? new AbortController() : null;
  var guard = setTimeout(function () { if (ctrl) { ctrl.abort(); } }, 10000);
  fetch(CFG.statusUrl, { cache: "no-store", credentials: "same-origin", headers: { "Accept": "application/json" }, signal: ctrl ? ctrl.signal : undefined })
    .then(function (res) { if (!res.ok) { throw new Error("HTTP " + res.status); } return res.json(); })
    .then(function (reply) {
      if (!reply || reply.status_code !== 200 || !reply.data) { return; }
      var code = Number(reply.data.status);
      if (code === 5) { setConfirming(Number(reply.data.confirmations), Number(reply.data.confirmations_required)); }
      else if (code === 1) { setWaiting(); }
      else if (code === 2) { setState("paid"); }
      else if (code === 3) { setState("expired"); stopPolling = true; }
      else if (code === 4) { setState("cancelled"); }
    })
    .catch(function () { /* network hiccup: try again on the next round */ })
    .then(function () { clearTimeout(guard); inFlight = false; schedule(3000); });
}

function selectText(el) {
  try {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  } catch (e) { /* nothing more we can do */ }
}

function fallbackCopy(text) {
  var area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "copy-buffer";
  document.body.appendChild(area);
  var ok = false;
  try {
    area.focus();
    area.select();
    area.setSelectionRange(0, text.length);
    ok = document.execCommand("copy");
  } catch (e) { ok = false; }
  document.body.removeChild(area);
  return ok;
}

function copyFrom(button) {
  var source = document.getElementById(button.getAttribute("data-copy-target"));
  if (!source) { return; }
  var text = source.textContent.trim();
  var label = button.querySelector(".copy-label");
  function done(ok) {
    button.classList.toggle("is-copied", ok);
    button.classList.toggle("is-failed", !ok);
    label.textContent = ok ? "Copied" : "Select";
    if (!ok) { selectText(source); }
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(function () {
      label.textContent = "Copy";
      button.classList.remove("is-copied", "is-failed");
    }, 1800);
  }
  if (navigator.clipboard && navigator.clipboard.writeText && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(text)); });
  } else {
    done(fallbackCopy(text));
  }
}

Array.prototype.forEach.call(document.querySelectorAll("[data-copy-target]"), function (button) {
  button.addEventListener("click", function () { copyFrom(button); });
});

document.addEventListener("visibilitychange", function () {
  if (document.visibilityState === "visible" && pollTimer !== null) {
    clearTimeout(pollTimer);
    pollTimer = null;
    poll();
  }
});

if (state === "waiting") {
  tick();
  tickTimer = setInterval(tick, 500);
} else {
  pollUntil = clock() + 120000;
}
schedule(0);
