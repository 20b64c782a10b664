// Switchyard admin UI: the little behaviour htmx does not cover (pausing a live tail, drawing charts).
(function () {
  "use strict";
  var MAX_TAIL = 200;

  // A live tail (sse-swap into .tail) can be paused: messages that arrive while paused are counted, not shown.
  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("[data-pause-for]");
    if (!btn) return;
    var tail = document.getElementById(btn.getAttribute("data-pause-for"));
    if (!tail) return;
    var paused = tail.getAttribute("data-paused") === "true";
    tail.setAttribute("data-paused", paused ? "false" : "true");
    btn.textContent = paused ? "Pause" : "Resume";
    btn.setAttribute("aria-pressed", paused ? "false" : "true");
    var note = document.getElementById(tail.id + "-note");
    if (note && paused) note.textContent = "";
  });
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var tail = e.detail.elt;
    if (!tail || tail.getAttribute("data-paused") !== "true" || e.detail.type !== "message") return;
    e.preventDefault();
    var note = document.getElementById(tail.id + "-note");
    if (note) {
      var n = Number(note.getAttribute("data-skipped") || 0) + 1;
      note.setAttribute("data-skipped", String(n));
      note.textContent = "paused: " + n + " message batch(es) not shown";
    }
  });
  document.addEventListener("htmx:sseMessage", function (e) {
    var tail = e.detail.elt;
    if (!tail || !tail.classList || !tail.classList.contains("tail")) return;
    while (tail.children.length > MAX_TAIL) tail.removeChild(tail.lastElementChild);
    var empty = tail.querySelector(".empty");
    if (empty && tail.children.length > 1) empty.remove();
  });

  // Query results carry their chart as JSON: [{"x": [...seconds], "series": [{"label", "values"}]}].
  function drawCharts(root) {
    if (typeof uPlot === "undefined") return;
    var nodes = root.querySelectorAll("[data-chart]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      if (el.getAttribute("data-drawn")) continue;
      el.setAttribute("data-drawn", "1");
      var spec = JSON.parse(el.querySelector("script[type='application/json']").textContent);
      var colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
      var series = [{ label: spec.time }].concat(spec.series.map(function (s, j) {
        return { label: s.label, stroke: colors[j % colors.length], width: 1.5 };
      }));
      var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
      var width = Math.max(280, el.clientWidth || 600);
      new uPlot({ width: width, height: 260, series: series, scales: { x: { time: true } } }, data, el);
    }
  }
  document.addEventListener("htmx:afterSettle", function (e) { drawCharts(e.detail.elt || document); });
  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
})();
