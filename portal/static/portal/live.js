// Corral live updates: one websocket, subscriptions checked by the server, DOM patched in place.
//
// Every message (its type, event, data, group: "subscribed" and "pong" too) is also dispatched as document's `corral:event` CustomEvent ({detail: message})
// for other scripts to follow (rows.js, usage.js).  The socket reconnects with back-off (1 s doubling to 30 s),
// subscribes again and then catches up on what it missed: each element of the page marked
// `data-live-region` (with an id) is replaced by the same element of a fresh copy of the page (the
// same server templates; `corral:caught-up` is dispatched after), and the dashboard's rows are
// fetched again.  "Live updates on" is shown only while the server answers a ping through the
// channel layer (every 20 s, 10 s allowed), so an outage of Redis or of the server is shown.
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

  // Dashboard rows come from the server's row template (the same as on page load), fetched when the
  // cluster changes; fetches for one row are coalesced, so a busy cluster costs one request a second.
  var rowFetches = {};
  function refreshRow(id) {
    var body = document.getElementById("cluster-rows");
    if (!body) return;
    var pending = rowFetches[id];
    if (pending) { pending.again = true; return; }
    rowFetches[id] = pending = { again: false };
    setTimeout(function () {
      fetch("/clusters/" + id + "/row/", { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.status === 404 ? "" : r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) return;
          var row = document.getElementById("cluster-" + id);
          if (html === "") { if (row) row.remove(); return; }  // gone, or no longer visible
          var fresh = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html").getElementById("cluster-" + id);
          if (!fresh) return;
          if (body.closest("table").dataset.state && fresh.querySelector('[data-field="state"]').textContent.trim() !== body.closest("table").dataset.state) {
            if (row) row.remove();  // a list filtered by state keeps to it
            return;
          }
          fresh = document.importNode(fresh, true);
          if (row) row.replaceWith(fresh);
          else { insertSorted(body, fresh); follow("cluster-" + id); }
          var empty = document.getElementById("no-clusters"); if (empty) empty.remove();
          if (window.Corral) window.Corral.refreshTimes(fresh);
        })
        .catch(function () {})
        .then(function () {
          setTimeout(function () {  // at most about one fetch a second per row, however busy its cluster
            delete rowFetches[id];
            if (pending.again) refreshRow(id);
          }, 1000);
        });
    }, 150);
  }

  // Rows are ordered by name, as the page renders them.
  function insertSorted(body, row) {
    var name = row.querySelector("th").textContent.trim();
    var next = Array.prototype.find.call(body.rows, function (r) { return r.querySelector("th").textContent.trim().localeCompare(name) > 0; });
    body.insertBefore(row, next || null);
  }

  var healthTimer = null;
  function refreshHealth() {
    var health = document.getElementById("fleet-health");
    if (!health || healthTimer) return;
    healthTimer = setTimeout(function () {
      fetch(health.dataset.fragmentUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          healthTimer = null;
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("fleet-health");
          var now = document.getElementById("fleet-health");
          if (fresh && now) now.replaceWith(document.importNode(fresh, true));
        })
        .catch(function () { healthTimer = null; });
    }, 1000);
  }

  function onCluster(event, data) {
    var row = document.getElementById("cluster-" + data.id);
    refreshHealth();
    if (event === "cluster.deleted") { if (row && row.tagName === "TR") row.remove(); return; }
    if (document.getElementById("cluster-rows")) { refreshRow(data.id); return; }
    if (!row) return;  // the cluster's own page: its facts patched in place
    var state = row.querySelector('[data-field="state"]');
    if (state) state.className = "state state-" + data.state;
    setText(row, "state", data.state);
    setText(row, "kubernetes_version", data.kubernetes_version || "–");
    setWhen(row, "last_seen", data.last_seen);
    setText(row, "last_error", data.state === "unavailable" || data.state === "error" ? data.last_error : "");
  }

  // A date field, rendered as the `when` template filter renders it.
  function setWhen(root, field, value, empty) {
    root.querySelectorAll('[data-field="' + field + '"]').forEach(function (el) {
      if (!window.Corral) { el.textContent = value || (empty == null ? "never" : empty); return; }
      var fresh = window.Corral.when(value, empty);
      if (el.tagName === "TIME") {  // the field is the <time> itself
        if (fresh.nodeType === 1) { el.setAttribute("datetime", value); el.className = "when"; el.textContent = fresh.textContent; el.title = fresh.title; }
        else { el.removeAttribute("datetime"); el.textContent = fresh.textContent; el.title = ""; }
      } else el.replaceChildren(fresh);
    });
  }

  function cores(m) { return String(Math.round((m || 0) / 100) / 10); }
  function size(b) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0; b = b || 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return i === 0 ? b + " B" : b.toFixed(1) + " " + units[i];
  }

  // A reader who may not see every pod gets node figures only (or none): keep what the page shows.
  function onSummary(data) {
    if (document.getElementById("cluster-rows")) { refreshRow(data.id); refreshHealth(); return; }
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
        var el = document.createElement(f === "reason" ? "strong" : "span");
        el.dataset.field = f; row.appendChild(el); row.appendChild(document.createTextNode(" "));
      });
      var empty = list.querySelector(".empty-row"); if (empty) empty.remove();
    }
    row.className = "event event-" + String(data.type).toLowerCase();
    setWhen(row, "last_seen", data.last_seen, "");
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
      var li = document.createElement("li");
      li.appendChild(window.Corral ? window.Corral.when(line.time, "") : document.createTextNode(line.time));
      li.appendChild(document.createTextNode(" " + line.message));
      log.appendChild(li);
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

  // Catching up: the page's live regions from a fresh copy of the page, the dashboard's rows and
  // health from their fragments.  A region holding the focus keeps the focused row (a form being
  // filled in) and takes the rest.
  function swapRegion(region, fresh) {
    var active = document.activeElement;
    if (!active || active === document.body || !region.contains(active)) { region.replaceWith(fresh); return; }
    var keep = active;
    while (keep.parentNode !== region) keep = keep.parentNode;
    var nodes = Array.prototype.map.call(fresh.childNodes, function (n) { return keep.id && n.id === keep.id ? keep : n; });
    Array.prototype.slice.call(region.childNodes).forEach(function (n) { if (n !== keep) n.remove(); });
    var before = nodes.indexOf(keep) >= 0;
    nodes.forEach(function (n) {
      if (n === keep) { before = false; return; }
      if (before) region.insertBefore(n, keep); else region.appendChild(n);
    });
  }

  function catchUp() {
    var regions = document.querySelectorAll("[data-live-region][id]");
    if (!regions.length) return Promise.resolve();
    return fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (!r.ok || r.redirected) throw new Error("the page answered " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        Array.prototype.forEach.call(regions, function (region) {
          var fresh = doc.getElementById(region.id);
          if (fresh && region.isConnected) swapRegion(region, document.importNode(fresh, true));
        });
        var health = doc.getElementById("fleet-health"), now = document.getElementById("fleet-health");
        if (health && now) now.replaceWith(document.importNode(health, true));
        var empty = document.getElementById("no-clusters");
        if (empty && document.querySelector("#cluster-rows tr")) empty.remove();
        document.querySelectorAll("#cluster-rows tr[data-cluster]").forEach(function (row) { follow("cluster-" + row.dataset.cluster); });
        if (window.Corral) window.Corral.refreshTimes(document);
        document.dispatchEvent(new CustomEvent("corral:caught-up"));
      });
  }

  var PING_SECONDS = 20, PONG_SECONDS = 10, socket = null;

  // A topic the page learns of later (a cluster created while the dashboard is open): followed from
  // now on, and after every reconnect.
  function follow(group) {
    if (groups.indexOf(group) >= 0) return;
    groups.push(group);
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ action: "subscribe", group: group }));
  }

  function connect() {
    var ws = socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/");
    var unanswered = groups.length;  // "on" once every subscription is answered: no event is missed after it
    var pinger = null, waiting = null, ended = false;
    function say(text) { if (status && !ended) status.textContent = text; }
    function ping() {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ action: "ping", id: String(Date.now()) }));
      waiting = setTimeout(function () {
        say("Live updates interrupted: the server does not answer; reconnecting…");
        ws.close();
      }, PONG_SECONDS * 1000);
    }
    ws.onopen = function () {
      say("Live updates starting…");
      groups.forEach(function (g) { ws.send(JSON.stringify({ action: "subscribe", group: g })); });
    };
    ws.onmessage = function (message) {
      var msg = JSON.parse(message.data);
      document.dispatchEvent(new CustomEvent("corral:event", { detail: msg }));  // every message, "subscribed" too (rows.js)
      if (msg.type === "pong") { clearTimeout(waiting); waiting = null; return; }
      if ((msg.type === "subscribed" || (msg.type === "error" && msg.group)) && --unanswered === 0) {
        delay = 1000;  // a healthy connection: the next outage starts its back-off afresh
        say("Live updates catching up…");
        catchUp().then(function () {
          say("Live updates on");
        }, function (error) {
          say("Live updates on; what changed while disconnected could not be fetched (" + error.message + "): reload to see it");
        });
        pinger = setInterval(ping, PING_SECONDS * 1000);
      }
      if (msg.type === "subscribed" && /^cluster-\d+$/.test(msg.group)) refreshPods(msg.group.slice(8));
      if (msg.type === "missed" && unanswered <= 0) {  // the server dropped events while Redis was away
        say("Live updates catching up…");
        catchUp().then(function () { say("Live updates on"); }, function (error) {
          say("Live updates on; what changed while Redis was away could not be fetched (" + error.message + "): reload to see it");
        });
        groups.forEach(function (g) { if (/^cluster-\d+$/.test(g)) refreshPods(g.slice(8)); });
      }
      if (msg.type === "closed") stopped = msg.reason;
      if (msg.type === "unsubscribed" && msg.reason) say("Live updates stopped: " + msg.reason);
      if (msg.type !== "event") return;
      if (msg.event === "cluster.summary") onSummary(msg.data);
      else if (msg.event.indexOf("cluster.") === 0) onCluster(msg.event, msg.data);
      else if (msg.event.indexOf("pod.") === 0) onPod(msg.event, msg.data);
      else if (msg.event.indexOf("deployment.") === 0 || msg.event.indexOf("statefulset.") === 0 || msg.event.indexOf("workload.") === 0 ||
               msg.event.indexOf("daemonset.") === 0 || msg.event.indexOf("job.") === 0) onWorkload(msg.event.replace(/^[a-z]+\./, "workload."), msg.data);
      else if (msg.event.indexOf("operation.") === 0) onOperation(msg.data);
      else if (msg.event.indexOf("alert.") === 0) onAlert(msg.event, msg.data);
      else if (msg.event.indexOf("event.") === 0) onKubeEvent(msg.event, msg.data);
      if (/^(node|alert|deployment|statefulset|daemonset|workload)\./.test(msg.event)) refreshHealth();
    };
    ws.onclose = function (close) {
      clearInterval(pinger); clearTimeout(waiting);
      if (stopped || close.code === 4401 || close.code === 4403) {
        say("Live updates stopped: " + (stopped || (close.code === 4403 ? "no access" : "signed out")) + ". Reload the page to sign in again.");
        ended = true;
        return;
      }
      say("Live updates paused; reconnecting in " + Math.round(delay / 1000) + " s…");
      ended = true;
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  if (groups.length) connect();
})();
