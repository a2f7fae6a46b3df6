/* "I have paid — here is my transaction hash" (templates/partials/submit_tx.html): sends the
   hash to CFG.submitUrl and shows the verdict; a confirmed payment turns the page to paid. */
(function () {
  var box = document.getElementById("txh");
  var form = document.getElementById("txh-form");
  if (!box || !form || !CFG.submitUrl) { return; }
  var input = document.getElementById("txh-input");
  var button = document.getElementById("txh-submit");
  var result = document.getElementById("txh-result");
  var busy = false;
  box.hidden = false;

  function show(ok, text) {
    result.textContent = text;
    result.setAttribute("data-ok", ok ? "1" : "0");
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (busy) { return; }
    var hash = input.value.trim();
    if (!hash) { show(false, "Paste the hash (TxID) of your transfer first."); input.focus(); return; }
    busy = true;
    button.disabled = true;
    show(true, "Checking the transaction on chain\u2026");
    var ctrl = window.AbortController ? new AbortController() : null;
    var guard = setTimeout(function () { if (ctrl) { ctrl.abort(); } }, 30000);
    fetch(CFG.submitUrl, {
      method: "POST", cache: "no-store", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ block_transaction_id: hash }),
      signal: ctrl ? ctrl.signal : undefined
    })
      .then(function (res) { return res.json(); })
      .then(function (reply) {
        if (reply && reply.status_code === 200 && reply.data && Number(reply.data.status) === 2) {
          show(true, "Payment confirmed.");
          setState("paid");
          return;
        }
        show(false, reply && reply.message ? reply.message : "The transaction could not be verified; try again in a minute.");
      })
      .catch(function () { show(false, "Could not reach the server; try again in a moment."); })
      .then(function () { clearTimeout(guard); busy = false; button.disabled = false; });
  });
})();
