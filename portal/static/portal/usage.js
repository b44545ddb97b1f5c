// Usage charts (uPlot, vendored under static/vendor/uplot/): CPU and memory in use over 1 h / 24 h /
// 7 d / 30 d against what is requested and allocatable (or a project's quota), read from
// /api/v1/usage/ (only what the reader may see) and redrawn when the websocket tells of a new
// collection of the cluster (live.js re-dispatches its events), or every 5 minutes without it.
(function () {
  "use strict";
  var root = document.querySelector("[data-usage-cluster]");
  if (!root || !window.uPlot || root.dataset.usageStarted) return;  // the page may load this script twice
  root.dataset.usageStarted = "1";
  var range = "1h", charts = {};

  function size(b) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i === 0 ? b : b.toFixed(1)) + " " + units[i];
  }

  function draw(rows) {
    ["cpu", "memory"].forEach(function (resource) {
      var el = root.querySelector('.chart[data-resource="' + resource + '"]');
      if (!el) return;
      if (charts[resource]) { charts[resource].destroy(); delete charts[resource]; }
      el.textContent = "";
      if (!rows.length) { el.textContent = "No usage points in this range yet."; return; }
      var xs = rows.map(function (r) { return Date.parse(r.at) / 1000; });
      var used = rows.map(function (r) { return resource === "cpu" ? r.cpu_m : r.memory_bytes; });
      var series = [{}, { label: "in use", stroke: "#1f6feb", width: 2 }], data = [xs, used];
      [["requested", "#bf8700"], ["limit", "#cf222e"], ["allocatable", "#57606a"]].forEach(function (line) {
        var value = root.dataset[resource + line[0].charAt(0).toUpperCase() + line[0].slice(1)];
        if (value === undefined || value === "") return;
        series.push({ label: line[0], stroke: line[1], dash: [6, 4] });
        data.push(xs.map(function () { return Number(value); }));
      });
      var format = resource === "cpu" ? function (u, v) { return v.map(function (x) { return (x / 1000) + " cores"; }); }
                                      : function (u, v) { return v.map(size); };
      charts[resource] = new uPlot({ width: Math.max(300, Math.min(el.clientWidth || 720, 960)), height: 220, series: series,
                                     axes: [{}, { values: format, size: 80 }] }, data, el);
    });
  }

  function load() {
    var url = "/api/v1/usage/?limit=1000&range=" + range + "&cluster=" + encodeURIComponent(root.dataset.usageCluster) +
              "&kind=" + encodeURIComponent(root.dataset.kind) + "&name=" + encodeURIComponent(root.dataset.name || "");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (page) { if (page) draw(page.results); });
  }

  root.querySelectorAll("[data-range]").forEach(function (button) {
    button.addEventListener("click", function () {
      range = button.dataset.range;
      root.querySelectorAll("[data-range]").forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
      load();
    });
  });
  document.addEventListener("corral:event", function (e) {
    var msg = e.detail;
    if (msg.event === "usage.collected" && String(msg.data.cluster) === root.dataset.usageCluster) load();
  });
  load();
  setInterval(load, 300000);
})();
