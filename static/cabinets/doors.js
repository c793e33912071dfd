/* The door grid of a cabinet's change page: polls the doors' JSON every few seconds and
   redraws the grid in place (no reload); Open asks a reason and posts it to the remote-open
   endpoint. Times come formatted from the server (core/timefmt.py: the operator's zone, with
   its offset), never in the browser's own zone. window.doorGrid tells tests what was drawn. */
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("door-grid-data").textContent);
  // Every word shown comes translated from the page (door_grid_context in cabinets/admin/doors.py).
  var TEXTS = config.texts;
  var grid = document.getElementById("door-grid");
  var asOf = document.getElementById("door-grid-asof");
  var note = document.getElementById("door-grid-message");
  var dialog = document.getElementById("door-open-dialog");
  var reason = document.getElementById("door-open-reason");
  var error = document.getElementById("door-open-error");
  var state = { ready: false, polls: 0, doors: [], failures: 0 };
  var opening = null;
  window.doorGrid = state;

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) { return values[key]; });
  }

  function csrf() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function cell(door) {
    var box = document.createElement("div");
    box.className = "door door-" + door.door_state + " service-" + door.service_state;
    box.id = "door-" + door.label;
    box.dataset.door = door.door_state;
    box.appendChild(text("div", door.label + " · " + door.size, "door-label"));
    box.appendChild(text("div", door.opening ? TEXTS.opening : door.door_label, "door-state"));
    box.appendChild(text("div", door.service_label, "door-service"));
    box.appendChild(text("div", door.tracking_number || TEXTS.empty, "door-parcel"));
    box.appendChild(text("div", door.last_event_shown, "door-when"));
    if (config.may_open) {
      var button = text("button", TEXTS.open, "door-open-button");
      button.type = "button";
      button.dataset.compartment = door.id;
      button.addEventListener("click", function () { ask(door); });
      box.appendChild(button);
    }
    return box;
  }

  function draw(data) {
    var cells = document.createDocumentFragment();
    data.doors.forEach(function (door) { cells.appendChild(cell(door)); });
    grid.replaceChildren(cells);
    if (!data.doors.length) grid.appendChild(text("p", TEXTS.no_compartments, "help"));
    asOf.textContent = fill(TEXTS.as_of, { time: data.as_of_shown });
    state.doors = data.doors;
  }

  function poll() {
    fetch(config.doors_url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        draw(data);
        state.failures = 0;
        state.polls += 1;
        state.ready = true;
      })
      .catch(function (e) {
        state.failures += 1;
        asOf.textContent = fill(TEXTS.not_updated, { error: e.message });
      })
      .finally(function () { setTimeout(poll, config.poll_ms); });
  }

  function ask(door) {
    opening = door;
    document.getElementById("door-open-title").textContent = door.tracking_number
      ? fill(TEXTS.open_door_parcel, { door: door.label, parcel: door.tracking_number })
      : fill(TEXTS.open_door, { door: door.label });
    reason.value = "";
    error.hidden = true;
    dialog.showModal();
    reason.focus();
  }

  function send() {
    if (!reason.value.trim()) {
      error.textContent = TEXTS.say_why;
      error.hidden = false;
      return;
    }
    var body = new URLSearchParams({ reason: reason.value });
    fetch(config.open_url.replace(/\/0\/open\/$/, "/" + opening.id + "/open/"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), Accept: "application/json" },
      body: body
    })
      .then(function (r) { return r.json().then(function (data) { return { ok: r.ok, data: data }; }); })
      .then(function (answer) {
        if (!answer.ok) {
          error.textContent = answer.data.message || TEXTS.not_opened;
          error.hidden = false;
          return;
        }
        dialog.close();
        note.textContent = answer.data.message;
      })
      .catch(function (e) {
        error.textContent = fill(TEXTS.not_opened_because, { error: e.message });
        error.hidden = false;
      });
  }

  document.getElementById("door-open-confirm").addEventListener("click", send);
  document.getElementById("door-open-cancel").addEventListener("click", function () { dialog.close(); });
  // The grid sits inside the change form: Enter in the reason must not save the cabinet.
  reason.addEventListener("keydown", function (e) {
    if (e.key === "Enter") { e.preventDefault(); send(); }
  });
  poll();
})();
