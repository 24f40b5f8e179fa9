// Small progressive enhancements; every page works without them (forms and links only).
(function () {
  "use strict";
  // Selects marked data-autosubmit submit their form on change; their button stays for keyboards.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // A radio with data-shows="id" enables the fieldset of that id while it is checked, and disables
  // the others of its group: a person (and the keyboard's Tab) meets only the controls that count.
  document.querySelectorAll("input[type=radio][data-shows]").forEach(function (radio) {
    var group = document.querySelectorAll("input[type=radio][name='" + radio.name + "'][data-shows]");
    function sync() {
      group.forEach(function (other) {
        var part = document.getElementById(other.getAttribute("data-shows"));
        if (part) { part.disabled = !other.checked; }
      });
    }
    radio.addEventListener("change", sync);
    sync();
  });
  // Drag and drop onto the upload box fills the Spreadsheet field.
  document.querySelectorAll("[data-drop]").forEach(function (zone) {
    var input = zone.querySelector("input[type=file]");
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; }
    });
  });
  // Live progress: poll the import's state; reload into the results when it is done.
  var live = document.getElementById("live");
  if (!live) { return; }
  var url = live.getAttribute("data-progress-url");
  var phases = JSON.parse(document.getElementById("phases").textContent);
  function show(data) {
    var g = data.progress || {};
    live.querySelectorAll("[data-key]").forEach(function (el) {
      var key = el.getAttribute("data-key"), value = g[key];
      if (key === "message") { value = g.message || phases[g.phase] || "Working…"; }
      if (key === "seconds_left") { value = value == null ? "—" : Math.round(value) + " s"; }
      if (value != null) { el.textContent = value; }
    });
    var bar = document.getElementById("bar");
    if (bar && g.calls_planned) { bar.max = g.calls_planned; bar.value = g.calls_done || 0; }
    if (data.cancel_requested) {
      document.getElementById("cancel-note").textContent = "Cancelling: calls already under way are finished and recorded.";
    }
  }
  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (data.status !== "running") { window.location.reload(); return; }
        show(data);
        setTimeout(poll, 700);
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 300);
})();
