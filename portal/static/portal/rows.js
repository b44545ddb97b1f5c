// Corral live rows: a table's rows come from the server's one row template, on page load and live.
// A container with data-rows="pod" (a <tbody> or <ul>) and data-filter="cluster=1&namespace=web"
// listens to live.js's "corral:event": a change fetches /rows/<kind>/<id>/?<filter>, rendered for
// this viewer (200: the row; 204: it is not in this table; 404: hidden from them), so a live row is
// the row a reload shows.  After each (re)subscription the whole table is fetched and merged.
// Tables with th[data-sort] sort on click; input[data-filter-table] filters rows as one types.
(function () {
  "use strict";
  var WORKLOAD = /^(deployment|statefulset|daemonset|job|cronjob|workload)\./;  // workload.*: a Swarm service
  var KINDS = ["pod", "node", "namespace", "event", "service"];
  var pending = {};
  var gone = {};  // uids of deleted objects (Kubernetes never reuses one): an answer sent before the deletion cannot bring them back

  function kindOf(name) {
    if (WORKLOAD.test(name)) return "workload";
    var kind = name.split(".")[0];
    return KINDS.indexOf(kind) >= 0 ? kind : null;
  }

  function containers(kind) {
    return Array.prototype.slice.call(document.querySelectorAll('[data-rows="' + kind + '"]'));
  }

  function rowsOf(container) {
    return Array.prototype.filter.call(container.children, function (el) { return !el.classList.contains("empty-row"); });
  }

  function find(container, kind, data) {
    return rowsOf(container).filter(function (el) {
      return (data.id != null && el.dataset.pk === String(data.id)) ||
             (data.uid && (el.dataset.uid === data.uid || el.id === kind + "-" + data.uid));
    });
  }

  // The rows of an answer: only elements that are rows of ``kind`` (never, say, a login page).
  function parse(html, kind) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return Array.prototype.filter.call(template.content.children, function (el) { return el.dataset && el.dataset.row === kind; });
  }

  function applyFilter(container, rows) {
    var input = container.id && document.querySelector('input[data-filter-table="' + container.id + '"]');
    var text = input ? input.value.trim().toLowerCase() : "";
    (rows || rowsOf(container)).forEach(function (row) { row.hidden = !!text && row.textContent.toLowerCase().indexOf(text) < 0; });
  }

  // Put a rendered row where a reload would: by its data-key (newest first for data-order="desc").
  function place(container, row) {
    if (row.dataset.uid && gone[row.dataset.row + ":" + row.dataset.uid]) return;
    var empty = container.querySelector(".empty-row");
    if (empty) empty.remove();
    var old = find(container, row.dataset.row, { id: row.dataset.pk, uid: row.dataset.uid });
    if (old.length === 1 && old[0].outerHTML === row.outerHTML) return;
    // In place when it can be (the elements one holds stay the same), else a new element.
    var el = old.length === 1 && morph(old[0], row) ? old[0] : null;
    if (!el) {
      old.forEach(function (o) { o.remove(); });
      el = row;
    }
    var desc = container.dataset.order === "desc", key = el.dataset.key || "";
    var before = rowsOf(container).filter(function (other) {
      var k = other.dataset.key || "";
      return other !== el && (desc ? k < key : k > key);
    })[0] || null;
    if (el.parentNode !== container || el.nextElementSibling !== before) container.insertBefore(el, before);
    applyFilter(container, [el]);
  }

  function attributeNames(el) {
    return Array.prototype.map.call(el.attributes, function (a) { return a.name; }).join(" ");
  }

  // Make ``from`` the same DOM as ``to`` in place, changing only what differs, so the elements a
  // reader (or a test) holds stay the same ones; attributes are rewritten in the server's order when
  // they differ, so the row serialises exactly as a reloaded one.  False when the node types differ.
  function morph(from, to) {
    if (from.nodeType !== to.nodeType || from.nodeName !== to.nodeName) return false;
    if (from.nodeType === Node.TEXT_NODE || from.nodeType === Node.COMMENT_NODE) {
      if (from.nodeValue !== to.nodeValue) from.nodeValue = to.nodeValue;
      return true;
    }
    if (from.nodeType !== Node.ELEMENT_NODE) return false;
    if (attributeNames(from) !== attributeNames(to)) {
      while (from.attributes.length) from.removeAttribute(from.attributes[0].name);
    }
    Array.prototype.forEach.call(to.attributes, function (a) { if (from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value); });
    for (var i = 0; i < to.childNodes.length; i++) {
      var target = to.childNodes[i], current = from.childNodes[i];
      if (!current) from.appendChild(target.cloneNode(true));
      else if (!morph(current, target)) from.replaceChild(target.cloneNode(true), current);
    }
    while (from.childNodes.length > to.childNodes.length) from.removeChild(from.lastChild);
    return true;
  }

  function drop(container, kind, data) {
    find(container, kind, data).forEach(function (el) { el.remove(); });
  }

  function fetchText(url) {
    // A redirect (signed out: to the login page) is no answer: the socket says why live updates stopped.
    return fetch(url, { credentials: "same-origin", redirect: "manual", headers: { Accept: "text/html" } })
      .then(function (r) { return r.status === 200 ? r.text().then(function (t) { return { status: 200, html: t }; }) : { status: r.status, html: "" }; });
  }

  function update(kind, data) {
    containers(kind).forEach(function (container) {
      var key = kind + ":" + data.id, mine = (pending[key] = (pending[key] || 0) + 1);
      var url = "/rows/" + kind + "/" + data.id + "/" + (container.dataset.filter ? "?" + container.dataset.filter : "");
      fetchText(url).then(function (answer) {
        if (pending[key] !== mine) return;  // a newer change of this row is on its way
        if (answer.status === 200) parse(answer.html, kind).forEach(function (row) { place(container, row); });
        else if (answer.status === 204 || answer.status === 404) drop(container, kind, data);
      }).catch(function () { /* the next change or the catch-up brings it */ });
    });
  }

  // After (re)subscribing: fetch the whole table and merge it in (changes missed while away).
  function catchUp() {
    document.querySelectorAll("[data-rows]").forEach(function (container) {
      var kind = container.dataset.rows;
      fetchText("/rows/" + kind + "/" + (container.dataset.filter ? "?" + container.dataset.filter : "")).then(function (answer) {
        if (answer.status !== 200) return;
        var rows = parse(answer.html, kind), keep = {};
        rows.forEach(function (row) { keep[row.dataset.pk] = true; });
        rowsOf(container).forEach(function (el) { if (!keep[el.dataset.pk]) el.remove(); });
        rows.forEach(function (row) { place(container, row); });
      }).catch(function () {});
    });
  }

  // The explorer's counts by kind: asked again a moment after changes stop coming.
  var countsTimer = null;
  function refreshCounts() {
    var nav = document.querySelector("[data-counts]");
    if (!nav) return;
    clearTimeout(countsTimer);
    countsTimer = setTimeout(function () {
      fetch(nav.dataset.counts, { credentials: "same-origin", redirect: "manual", headers: { Accept: "application/json" } })
        .then(function (r) { return r.status === 200 ? r.json() : null; })
        .then(function (counts) {
          if (!counts) return;
          nav.querySelectorAll("[data-count]").forEach(function (el) {
            if (el.dataset.count in counts && el.textContent !== String(counts[el.dataset.count])) el.textContent = counts[el.dataset.count];
          });
        }).catch(function () {});
    }, 500);
  }

  var catchUpTimer = null;
  document.addEventListener("corral:event", function (e) {
    var msg = e.detail || {};
    if (msg.type === "subscribed" && /^cluster-\d+$/.test(msg.group || "")) {
      clearTimeout(catchUpTimer);
      catchUpTimer = setTimeout(catchUp, 200);
      return;
    }
    if (msg.type !== "event" || !msg.event || !msg.data) return;
    var kind = kindOf(msg.event);
    if (!kind) return;
    if (/\.deleted$/.test(msg.event) || !document.querySelector('[data-rows="' + kind + '"] [data-pk="' + msg.data.id + '"]')) refreshCounts();
    if (/\.deleted$/.test(msg.event)) {
      if (msg.data.uid) gone[kind + ":" + msg.data.uid] = true;
      containers(kind).forEach(function (c) { drop(c, kind, msg.data); });
    }
    else if (msg.data.id != null) update(kind, msg.data);
    // A workload's "why" comes from its events: an event about it re-renders its row.
    if (kind === "event" && msg.data.workload_uid) {
      containers("workload").forEach(function (c) {
        find(c, "workload", { uid: msg.data.workload_uid }).forEach(function (row) { update("workload", { id: row.dataset.pk }); });
      });
    }
  });

  // Sortable columns: click a header (again to reverse); numbers compare as numbers.
  document.addEventListener("click", function (e) {
    var th = e.target.closest && e.target.closest("th[data-sort]");
    if (!th || th.closest("tbody")) return;
    var table = th.closest("table"), body = table.tBodies[0];
    if (!body) return;
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var numeric = th.dataset.sort === "number";
    var rows = rowsOf(body);
    rows.sort(function (a, b) {
      var x = (a.children[index] || {}).textContent || "", y = (b.children[index] || {}).textContent || "";
      var order = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y, undefined, { numeric: true });
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });

  document.addEventListener("input", function (e) {
    var id = e.target.dataset && e.target.dataset.filterTable;
    var container = id && document.getElementById(id);
    if (container) applyFilter(container);
  });
  document.querySelectorAll("th[data-sort]").forEach(function (th) { th.tabIndex = 0; th.title = "Sort"; });
})();
