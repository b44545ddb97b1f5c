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

  function cores(m) { return String(Math.round((m || 0) / 100) / 10); }
  function size(b) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0; b = b || 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return i === 0 ? b + " B" : b.toFixed(1) + " " + units[i];
  }

  // A reader who may not see every pod gets node figures only (or none): keep what the page shows.
  function onSummary(data) {
    var row = document.getElementById("cluster-" + data.id);
    if (!row) return;
    if ("nodes_total" in data) setText(row, "nodes", data.nodes_ready + " / " + data.nodes_total);
    if ("pods" in data) {
      setText(row, "cpu", cores(data.cpu_requested_m) + " / " + cores(data.cpu_allocatable_m));
      setText(row, "memory", size(data.memory_requested_bytes) + " / " + size(data.memory_allocatable_bytes));
      setText(row, "pods", data.pods);
    }
  }

  function onPod(event, data) {
    var row = document.getElementById("pod-" + data.uid);
    if (event === "pod.deleted") { if (row) row.remove(); return; }
    var body = document.getElementById("pods");
    if (!body) return;
    if (!row) {
      if (body.dataset.query) return;  // a searched list only changes on reload
      var names = {};
      (body.dataset.namespaces || "").split(",").forEach(function (pair) {
        var i = pair.indexOf(":"); if (i > 0) names[pair.slice(0, i)] = pair.slice(i + 1);
      });
      if (body.dataset.namespace && (data.namespace || names[data.namespace_id]) !== body.dataset.namespace) return;
      row = document.createElement("tr");
      row.id = "pod-" + data.uid;
      var ns = document.createElement("td"); ns.textContent = data.namespace || names[data.namespace_id] || ""; row.appendChild(ns);
      var th = document.createElement("th"); th.scope = "row"; th.textContent = data.name; row.appendChild(th);
      ["phase", "restarts", "node_name"].forEach(function (f) {
        var td = document.createElement("td"); td.dataset.field = f; row.appendChild(td);
      });
      row.appendChild(document.createElement("td"));  // actions appear on reload, with the permission check
      var empty = body.querySelector(".empty-row"); if (empty) empty.remove();
      body.appendChild(row);
    }
    setText(row, "phase", data.phase);
    setText(row, "restarts", data.restarts);
    setText(row, "node_name", data.node_name);
  }

  // Changes between the page being rendered and the subscription are caught up here, from the API.
  function refreshPods(clusterId) {
    var body = document.getElementById("pods");
    if (!body || body.dataset.query) return;
    var url = "/api/v1/pods/?limit=200&cluster=" + clusterId + (body.dataset.namespace ? "&namespace=" + encodeURIComponent(body.dataset.namespace) : "");
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (page) {
        if (!page) return;
        var seen = {};
        page.results.forEach(function (pod) {
          seen["pod-" + pod.uid] = true;
          onPod("pod.updated", { uid: pod.uid, name: pod.name, namespace_id: null, phase: pod.phase, restarts: pod.restarts, node_name: pod.node_name, namespace: pod.namespace });
        });
        if (page.next) return;  // more pods than one page: keep the rows we cannot check
        Array.prototype.forEach.call(body.querySelectorAll("tr[id^=pod-]"), function (row) { if (!seen[row.id]) row.remove(); });
      });
  }

  function onWorkload(event, data) {
    var row = document.getElementById("workload-" + data.uid);
    if (!row) return;
    if (event === "workload.deleted") { row.remove(); return; }
    setText(row, "ready", data.ready_replicas + " / " + data.desired_replicas);
    showWhy(row);
  }

  // A workload's "why" line shows while it is below its desired count.
  function showWhy(row) {
    var why = row.querySelector('[data-field="why"]');
    if (!why) return;
    var counts = (row.querySelector('[data-field="ready"]') || {}).textContent || "";
    var m = counts.match(/(\d+)\s*\/\s*(\d+)/);
    setText(row, "why", m && +m[1] < +m[2] ? row.dataset.why || why.textContent : "");
  }

  // A Kubernetes event: into the page's list (newest first), and as the "why" of its workload's row.
  function onKubeEvent(event, data) {
    var row = document.getElementById("event-" + data.uid);
    if (event === "event.deleted") { if (row) row.remove(); return; }
    var list = document.getElementById("events");
    if (data.workload_uid) {
      var workload = document.getElementById("workload-" + data.workload_uid);
      if (workload && data.why) { workload.dataset.why = data.why; showWhy(workload); }
    }
    if (!list || (list.dataset.namespace && list.dataset.namespace !== data.namespace)) return;
    if (!row) {
      row = document.createElement("li");
      row.id = "event-" + data.uid;
      ["last_seen", "type", "reason", "involved", "message", "count"].forEach(function (f) {
        var el = document.createElement(f === "last_seen" ? "time" : f === "reason" ? "strong" : "span");
        el.dataset.field = f; row.appendChild(el); row.appendChild(document.createTextNode(" "));
      });
      var empty = list.querySelector(".empty-row"); if (empty) empty.remove();
    }
    row.className = "event event-" + String(data.type).toLowerCase();
    setText(row, "last_seen", data.last_seen ? new Date(data.last_seen).toLocaleString() : "");
    setText(row, "type", data.type);
    setText(row, "reason", data.reason);
    setText(row, "involved", data.involved_kind + "/" + data.involved_name + (data.namespace ? " in " + data.namespace : "") + ":");
    setText(row, "message", data.message);
    setText(row, "count", data.count > 1 ? "×" + data.count : "");
    list.insertBefore(row, list.firstChild);
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

  var stopped = null;  // why the server ended live updates (signed out, deactivated): no reconnecting

  // The alerts page: a known row changes state in place; a new alert is added at the top.
  function onAlert(event, data) {
    var body = document.querySelector("#alerts tbody");
    if (!body) return;
    var row = document.getElementById("alert-" + data.id);
    if (event === "alert.deleted") { if (row) row.remove(); return; }
    if (!row) {
      if (data.state === "resolved") return;
      row = document.createElement("tr");
      row.id = "alert-" + data.id;
      ["state", "severity", "", "", "target", "message", "", ""].forEach(function (f) {
        var td = document.createElement("td"); if (f) td.dataset.field = f; row.appendChild(td);
      });
      body.insertBefore(row, body.firstChild);
      var empty = body.querySelector(".empty-row"); if (empty) empty.remove();
    }
    var state = row.querySelector('[data-field="state"]');
    if (state) state.className = "state state-" + data.state;
    setText(row, "state", data.state);
    setText(row, "severity", data.severity);
    setText(row, "target", data.target);
    setText(row, "message", data.message);
  }

  function connect() {
    var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/");
    var unanswered = groups.length;  // "on" once every subscription is answered: no event is missed after it
    ws.onopen = function () {
      delay = 1000;
      if (status) status.textContent = "Live updates starting…";
      groups.forEach(function (g) { ws.send(JSON.stringify({ action: "subscribe", group: g })); });
    };
    ws.onmessage = function (message) {
      var msg = JSON.parse(message.data);
      document.dispatchEvent(new CustomEvent("corral:event", { detail: msg }));  // every message (rows.js)
      if ((msg.type === "subscribed" || (msg.type === "error" && msg.group)) && --unanswered === 0 && status) status.textContent = "Live updates on";
      if (msg.type === "subscribed" && /^cluster-\d+$/.test(msg.group)) refreshPods(msg.group.slice(8));
      if (msg.type === "closed") stopped = msg.reason;
      if (msg.type === "unsubscribed" && msg.reason && status) status.textContent = "Live updates stopped: " + msg.reason;
      if (msg.type !== "event") return;
      if (msg.event === "cluster.summary") onSummary(msg.data);
      else if (msg.event.indexOf("cluster.") === 0) onCluster(msg.event, msg.data);
      else if (msg.event.indexOf("pod.") === 0) onPod(msg.event, msg.data);
      else if (msg.event.indexOf("deployment.") === 0 || msg.event.indexOf("statefulset.") === 0 ||
               msg.event.indexOf("daemonset.") === 0 || msg.event.indexOf("job.") === 0) onWorkload(msg.event.replace(/^[a-z]+\./, "workload."), msg.data);
      else if (msg.event.indexOf("operation.") === 0) onOperation(msg.data);
      else if (msg.event.indexOf("alert.") === 0) onAlert(msg.event, msg.data);
      else if (msg.event.indexOf("event.") === 0) onKubeEvent(msg.event, msg.data);
    };
    ws.onclose = function (close) {
      if (stopped || close.code === 4401 || close.code === 4403) {
        if (status) status.textContent = "Live updates stopped: " + (stopped || (close.code === 4403 ? "no access" : "signed out")) + ". Reload the page to sign in again.";
        return;
      }
      if (status) status.textContent = "Live updates paused; reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  if (groups.length) connect();
})();
