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
  // The object is found by its path (pods, workloads, services) or by its coordinates through the
  // cluster's discovery (any kind).  A Secret's values are masked until asked for; applying a
  // masked text puts the values back as they were.
  var yaml = document.getElementById("yaml-text");
  if (yaml) {
    var d = yaml.dataset;
    var url = d.path ? d.proxy + d.path : "";
    var state = document.getElementById("yaml-status");
    var reveal = document.getElementById("yaml-reveal");
    var revealLabel = document.getElementById("yaml-reveal-label");
    var HIDDEN = " (hidden)";
    var original = "";
    var masked = false;

    var secretValues = function (text, each) {
      var inBlock = false;
      return text.split("\n").map(function (line) {
        if (/^\S/.test(line)) { inBlock = /^(data|stringData):\s*$/.test(line); return line; }
        var m = inBlock && line.match(/^  ([^\s:#][^:]*):(.*)$/);
        return m ? each(line, m[1], m[2]) : line;
      }).join("\n");
    };
    var isSecret = function (text) { return /^kind: Secret\s*$/m.test(text); };
    var mask = function (text) { return secretValues(text, function (line, key) { return "  " + key + ":" + HIDDEN; }); };
    var unmask = function (text) {
      var values = {};
      secretValues(original, function (line, key, value) { values[key] = value; return line; });
      return secretValues(text, function (line, key, value) {
        return value === HIDDEN && Object.prototype.hasOwnProperty.call(values, key) ? "  " + key + ":" + values[key] : line;
      });
    };
    var show = function (text) {
      original = text;
      revealLabel.hidden = !isSecret(text);
      masked = isSecret(text) && !reveal.checked;
      yaml.value = masked ? mask(text) : text;
    };
    reveal.addEventListener("change", function () {
      show(masked ? unmask(yaml.value) : yaml.value);
    });

    var resolve = function () {
      if (url) { return Promise.resolve(url); }
      var group = d.apiVersion.indexOf("/") === -1 ? "/api/" + d.apiVersion : "/apis/" + d.apiVersion;
      return fetch(d.proxy + group, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.text().then(function (t) { return [r, t]; }); })
        .then(function (rt) {
          if (!rt[0].ok) { throw new Error(d.apiVersion + ": " + statusMessage(rt[0], rt[1])); }
          var found = (JSON.parse(rt[1]).resources || []).filter(function (res) {
            return res.kind === d.kind && res.name.indexOf("/") === -1;
          })[0];
          if (!found) { throw new Error("the cluster serves no kind " + d.kind + " in " + d.apiVersion); }
          if (found.namespaced && !d.namespace) { throw new Error(d.kind + " is namespaced: give its namespace"); }
          url = d.proxy + group + (found.namespaced ? "/namespaces/" + encodeURIComponent(d.namespace) : "") +
            "/" + found.name + "/" + encodeURIComponent(d.name);
          return url;
        });
    };

    var load = function () {
      state.textContent = "loading…";
      resolve()
        .then(function (target) { return fetch(target, { credentials: "same-origin", headers: { Accept: "application/yaml" } }); })
        .then(function (r) { return r.text().then(function (t) { return [r, t]; }); })
        .then(function (rt) {
          if (!rt[0].ok) { yaml.value = ""; state.textContent = statusMessage(rt[0], rt[1]); return; }
          show(rt[1]);
          state.textContent = "";
        })
        .catch(function (e) { state.textContent = e.message; });
    };
    document.getElementById("yaml-reload").addEventListener("click", load);
    document.getElementById("yaml-form").addEventListener("submit", function (e) {
      e.preventDefault();
      if (!url) { return; }
      state.textContent = "applying…";
      fetch(url, {
        method: "PUT", credentials: "same-origin", body: masked ? unmask(yaml.value) : yaml.value,
        headers: { "Content-Type": "application/yaml", Accept: "application/yaml", "X-CSRFToken": csrf() },
      })
        .then(function (r) { return r.text().then(function (t) { return [r, t]; }); })
        .then(function (rt) {
          if (rt[0].status === 409) {
            state.textContent = "conflict: " + statusMessage(rt[0], rt[1]) + " (Reload shows the current version; your text stays until then)";
            return;
          }
          if (!rt[0].ok) { state.textContent = "refused: " + statusMessage(rt[0], rt[1]); return; }
          show(rt[1]);
          state.textContent = "applied";
        })
        .catch(function (e) { state.textContent = "refused: " + e.message; });
    });
    load();
  }
})();
