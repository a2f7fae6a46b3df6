/* Network choice: a [data-switch-network] button posts {trade_id, token, network} to
   /pay/switch-network and opens the checkout of the order to pay (the same trade_id for a
   placeholder, the child order for a switch). Needs CFG.tradeId. */
(function () {
  var buttons = document.querySelectorAll("[data-switch-network]");
  var errEl = document.getElementById("switch-error");
  function setBusy(busy) {
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = busy; }
  }
  function fail(msg) {
    setBusy(false);
    if (errEl) { errEl.textContent = msg; errEl.hidden = false; }
  }
  function choose(token, network) {
    setBusy(true);
    if (errEl) { errEl.hidden = true; }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/pay/switch-network");
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.onload = function () {
      var r = null;
      try { r = JSON.parse(xhr.responseText); } catch (e) { r = null; }
      if (r && r.status_code === 200 && r.data && r.data.trade_id) {
        window.location.assign("/pay/checkout-counter/" + encodeURIComponent(r.data.trade_id));
      } else {
        fail(r && r.message ? r.message : "Could not switch the network, please retry.");
      }
    };
    xhr.onerror = function () { fail("Connection problem, please retry."); };
    xhr.send(JSON.stringify({ trade_id: CFG.tradeId, token: token || "USDT", network: network }));
  }
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (ev) {
      choose(ev.currentTarget.getAttribute("data-switch-token"),
        ev.currentTarget.getAttribute("data-switch-network"));
    });
  }
})();
