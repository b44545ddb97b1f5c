// Corral live updates: one websocket, subscriptions checked by the server, DOM patched in place.
(function () {
  "use strict";
  var script = document.currentScript;
  var groups = (script.dataset.groups || "").split(",").filter(Boolean);
  if (script.dataset.feed) groups.push(script.dataset.feed);
  var ids = document.getElementById("subscribe-clusters");
  if (ids) JSON.parse(ids.textContent).forEach(function (id) { groups.push("cluster-" + id); });
  var status = document.getElementById("live-status");
  var delay = 1000;

  function setText(root, field, value) {
    root.querySelectorAll('[data-field="' + field + '"]').forEach(function (el) {
      if (el.tagName === "PROGRESS") { el.value = value; el.textContent = value + "%"; }
      else el.textContent = value == null || value === "" ? (field === "last_seen" ? "never" : "") : value;
    });
  }

  function onCluster(event, data) {
    var row = document.getElementById("cluster-" + data.id);
    if (event === "cluster.deleted") { if (row && row.tagName === "TR") row.remove(); return; }
    if (!row) {
      var table = document.querySelector("#clusters tbody");
      if (!table || event !== "cluster.created" && event !== "cluster.updated") return;
      row = document.createElement("tr");
      row.id = "cluster-" + data.id;
      var th = document.createElement("th"); th.scope = "row";
      var link = document.createElement("a"); link.href = "/clusters/" + data.id + "/"; link.textContent = data.name;
      th.appendChild(link); row.appendChild(th);
      ["state", "kubernetes_version", "", "", "", "", "last_seen"].forEach(function (f) {
        var td = document.createElement("td"); if (f) td.dataset.field = f; row.appendChild(td);
      });
      table.appendChild(row);
    }
    var state = row.querySelector('[data-field="state"]');
    if (state) state.className = "state state-" + data.state;
    setText(row, "state", data.state);
    setText(row, "kubernetes_version", data.kubernetes_version || "–");
    setText(row, "last_seen", data.last_seen ? new Date(data.last_seen).toLocaleString() : null);
    setText(row, "last_error", data.state === "unavailable" || data.state === "error" ? data.last_error : "");
  }

  function onOperation(data) {
    var root = document.getElementById("operation-" + data.id);
    if (!root) return;
    setText(root, "status", data.status);
    setText(root, "progress", data.progress);
    setText(root, "error", data.error);
    var log = root.querySelector('[data-field="log"]');
    if (log && data.log) data.log.forEach(function (line) {
      var li = document.createElement("li"); li.textContent = line.time + " " + line.message; log.appendChild(li);
    });
  }

  function connect() {
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/");
    ws.onopen = function () {
      delay = 1000;
      if (status) status.textContent = "Live updates on";
      groups.forEach(function (g) { ws.send(JSON.stringify({ action: "subscribe", group: g })); });
    };
    ws.onmessage = function (message) {
      var msg = JSON.parse(message.data);
      if (msg.type !== "event") return;
      if (msg.event.indexOf("cluster.") === 0) onCluster(msg.event, msg.data);
      else if (msg.event.indexOf("operation.") === 0) onOperation(msg.data);
      document.dispatchEvent(new CustomEvent("corral:event", { detail: msg }));
    };
    ws.onclose = function () {
      if (status) status.textContent = "Live updates paused; reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  if (groups.length) connect();
})();
