// Pod logs (follow, previous, search) and YAML edit-and-apply, through Corral's Kubernetes API
// proxy (/k8s/clusters/<id>/...) with the page's session: the same decision as kubectl's, and
// the cluster's own RBAC.
(function () {
  "use strict";

  function csrf() {
    var m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function statusMessage(response, text) {
    try { return JSON.parse(text).message || text; } catch (e) { return text || response.statusText; }
  }

  // --- logs -------------------------------------------------------------------------------
  var log = document.getElementById("log");
  if (log) {
    var base = log.dataset.proxy + log.dataset.path;
    var container = document.getElementById("log-container");
    var follow = document.getElementById("log-follow");
    var previous = document.getElementById("log-previous");
    var tail = document.getElementById("log-tail");
    var search = document.getElementById("log-search");
    var matches = document.getElementById("log-matches");
    var error = document.getElementById("log-error");
    var controller = null;
    var text = "";

    var render = function () {
      var needle = search.value;
      var lines = text.split("\n");
      if (needle) { lines = lines.filter(function (l) { return l.indexOf(needle) !== -1; }); }
      log.textContent = lines.join("\n");
      matches.textContent = needle ? lines.length + " matching lines" : "";
      if (follow.checked && !needle) { log.scrollTop = log.scrollHeight; }
    };

    var start = function () {
      if (controller) { controller.abort(); }
      controller = new AbortController();
      text = "";
      error.textContent = "";
      render();
      var query = new URLSearchParams({ container: container.value, tailLines: tail.value || "1000" });
      if (follow.checked && !previous.checked) { query.set("follow", "true"); }
      if (previous.checked) { query.set("previous", "true"); }
      fetch(base + "/log?" + query.toString(), { credentials: "same-origin", signal: controller.signal })
        .then(function (response) {
          if (!response.ok) {
            return response.text().then(function (t) { error.textContent = statusMessage(response, t); });
          }
          var reader = response.body.getReader();
          var decoder = new TextDecoder();
          var pump = function () {
            return reader.read().then(function (chunk) {
              if (chunk.done) { return; }
              text += decoder.decode(chunk.value, { stream: true });
              render();
              return pump();
            });
          };
          return pump();
        })
        .catch(function (e) { if (e.name !== "AbortError") { error.textContent = String(e); } });
    };

    fetch(base, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (pod) {
        var names = ((pod.spec && pod.spec.containers) || []).map(function (c) { return c.name; });
        names.forEach(function (name) {
          var option = document.createElement("option");
          option.value = option.textContent = name;
          container.appendChild(option);
        });
        if (!names.length) { error.textContent = statusMessage({ statusText: "" }, JSON.stringify(pod)); return; }
        start();
      });
    [container, follow, previous, tail].forEach(function (el) { el.addEventListener("change", start); });
    search.addEventListener("input", render);
    document.getElementById("log-options").addEventListener("submit", function (e) { e.preventDefault(); });
  }

  // --- YAML ---------------------------------------------------------------------------------
  var yaml = document.getElementById("yaml-text");
  if (yaml) {
    var url = yaml.dataset.proxy + yaml.dataset.path;
    var state = document.getElementById("yaml-status");
    var load = function () {
      state.textContent = "loading…";
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/yaml" } })
        .then(function (r) { return r.text().then(function (t) { return [r, t]; }); })
        .then(function (rt) {
          if (!rt[0].ok) { state.textContent = statusMessage(rt[0], rt[1]); return; }
          yaml.value = rt[1];
          state.textContent = "";
        });
    };
    document.getElementById("yaml-reload").addEventListener("click", load);
    document.getElementById("yaml-form").addEventListener("submit", function (e) {
      e.preventDefault();
      state.textContent = "applying…";
      fetch(url, {
        method: "PUT", credentials: "same-origin", body: yaml.value,
        headers: { "Content-Type": "application/yaml", Accept: "application/yaml", "X-CSRFToken": csrf() },
      })
        .then(function (r) { return r.text().then(function (t) { return [r, t]; }); })
        .then(function (rt) {
          if (!rt[0].ok) { state.textContent = "refused: " + statusMessage(rt[0], rt[1]); return; }
          yaml.value = rt[1];
          state.textContent = "applied";
        });
    });
    load();
  }
})();
