/* The rollout page's live progress: polls the rollout's JSON every few seconds and redraws
   the per-wave counts in place. window.rolloutLive tells tests what was drawn. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("rollout-live").textContent);
  // Every word shown comes translated from the page (rollout_live_context in cabinets/admin/rollouts.py).
  var TEXTS = config.texts;
  var body = document.getElementById("rollout-waves");
  var totals = document.getElementById("rollout-totals");
  var STATES = ["scheduled", "sent", "received", "succeeded", "failed", "timed_out", "skipped", "cancelled"];
  var live = { ready: false, polls: 0, data: null };
  window.rolloutLive = live;

  function td(value, state) {
    var el = document.createElement("td");
    el.textContent = value;
    if (state) el.dataset.state = state;
    return el;
  }

  function row(wave) {
    var tr = document.createElement("tr");
    tr.dataset.wave = wave.number;
    [wave.number, wave.spec, wave.size, wave.state_label].forEach(function (v) { tr.appendChild(td(v)); });
    STATES.forEach(function (s) { tr.appendChild(td(wave.counts[s], s)); });
    tr.appendChild(td(wave.total, "total"));
    var done = document.createElement("td");
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = Math.round(wave.done_pct);
    done.appendChild(bar);
    var pct = document.createElement("span");
    pct.dataset.state = "done";
    pct.textContent = " " + Math.round(wave.done_pct) + "%";
    done.appendChild(pct);
    tr.appendChild(done);
    return tr;
  }

  function draw(data) {
    var rows = document.createDocumentFragment();
    data.waves.forEach(function (w) { rows.appendChild(row(w)); });
    body.replaceChildren(rows);
    STATES.forEach(function (s) {
      totals.querySelector('[data-state="' + s + '"]').textContent = data.totals.counts[s];
    });
    totals.querySelector('[data-state="total"]').textContent = data.totals.total;
    totals.querySelector('[data-state="done"]').textContent = Math.round(data.totals.done_pct) + "%";
    document.getElementById("rollout-state").textContent = data.state_label;
    document.getElementById("rollout-state-reason").textContent = data.state_reason ? " — " + data.state_reason : "";
    document.getElementById("rollout-state-changed").hidden = data.state === config.state;
    // Formatted by the server (core/timefmt.py), not in the browser's zone and locale.
    document.getElementById("rollout-as-of").textContent = TEXTS.as_of.replace("%(time)s", data.as_of_shown);
    live.data = data;
  }

  function poll() {
    fetch(config.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) { draw(data); live.polls += 1; live.ready = true; })
      .catch(function (e) { document.getElementById("rollout-as-of").textContent = TEXTS.not_updated.replace("%(error)s", e.message); })
      .finally(function () { setTimeout(poll, config.poll_ms); });
  }
  poll();
})();
