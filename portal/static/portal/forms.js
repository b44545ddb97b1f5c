// Portal forms post to the REST API (the same validation and permissions as every other client)
// and show its answers in place.  <form class="api-form" data-api="/api/v1/..." data-method="POST"
// data-then="reload" | "go:/projects/{id}/" | "report">; fields may say data-type="int" | "ints" |
// "env" | "quantities" | "json" | "null".  "report" shows the answer's summary with a link to its page; an
// <option data-placeholders='{"field": "text"}'> sets the form's placeholders when chosen.
(function () {
  "use strict";
  function csrf() {
    var m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function parseQuantities(text, name) {
    var out = {};
    text.split(/[\n,]+/).forEach(function (line) {
      line = line.trim();
      if (!line) return;
      var m = line.match(/^([A-Za-z0-9.\-\/]+)\s*[:=]\s*(\S+)$/);
      if (!m) throw new Error(name + ": write one limit per line, like limits.cpu: 4");
      out[m[1]] = m[2];
    });
    return out;
  }

  function parseInts(text, name) {
    return text.split(/[\s,]+/).filter(Boolean).map(function (word) {
      if (!/^\d+$/.test(word)) throw new Error(name + ": " + word + " is not a number; write ports like 80, 443");
      return parseInt(word, 10);
    });
  }

  function parseEnv(text, name) {
    var out = [];
    text.split("\n").forEach(function (line, i) {
      if (!line.trim()) return;
      var at = line.indexOf("=");
      if (at <= 0) throw new Error(name + ": line " + (i + 1) + ": write NAME=value");
      out.push({ name: line.slice(0, at).trim(), value: line.slice(at + 1) });
    });
    return out;
  }

  function body(form) {
    var data = {}, url = form.dataset.api;
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled || el.type === "submit") return;
      if ((el.type === "checkbox" || el.type === "radio") && !el.checked) return;
      var value = el.value, type = el.dataset.type;
      if (url.indexOf("{" + el.name + "}") >= 0) { url = url.replace("{" + el.name + "}", encodeURIComponent(value)); return; }
      if (value.trim() === "" && el.dataset.empty === "object") { data[el.name] = {}; return; }
      if (value === "" && type !== "null") return;
      if (type === "int") value = parseInt(value, 10);
      else if (type === "null") value = value === "" ? null : parseInt(value, 10);
      else if (type === "quantities") value = parseQuantities(value, el.name);
      else if (type === "ints") value = parseInts(value, el.name);
      else if (type === "env") value = parseEnv(value, el.name);
      else if (type === "json") {
        try { value = JSON.parse(value); } catch (e) { throw new Error(el.name + ": not valid JSON (" + e.message + ")"); }
      }
      if (el.name.indexOf(".") > 0) {  // "driver_config.nodes": a field of an object
        var path = el.name.split("."), into = data;
        path.slice(0, -1).forEach(function (key) { into = into[key] = into[key] || {}; });
        into[path[path.length - 1]] = value;
      } else data[el.name] = value;
    });
    return { url: url, data: data };
  }

  function show(form, problems) {
    var box = form.querySelector(".form-errors");
    if (!box) { box = document.createElement("div"); box.className = "form-errors"; box.setAttribute("role", "alert"); form.appendChild(box); }
    box.textContent = "";
    problems.forEach(function (text) { var p = document.createElement("p"); p.className = "error"; p.textContent = text; box.appendChild(p); });
  }

  function report(form, payload) {
    var errors = form.querySelector(".form-errors");
    if (errors) errors.textContent = "";
    // A form in a live table row reports above the table: the row may be drawn again any moment.
    var table = form.closest("tr") && form.closest("table"), anchor = table ? (table.closest(".table-wrap") || table) : null;
    var box = anchor ? document.getElementById(table.id + "-result") : form.querySelector(".form-result");
    if (!box) {
      box = document.createElement("p"); box.className = "form-result"; box.setAttribute("role", "status");
      if (anchor) { box.id = table.id + "-result"; anchor.parentNode.insertBefore(box, anchor); } else form.appendChild(box);
    }
    box.textContent = "Created " + ((payload && payload.summary) || "it");
    if (payload && payload.page) {
      var link = document.createElement("a");
      link.href = payload.page; link.textContent = "open";
      box.appendChild(document.createTextNode(" — ")); box.appendChild(link);
    }
  }

  function placeholders(select) {
    var option = select.options[select.selectedIndex], form = select.form, texts;
    if (!option || !option.dataset.placeholders || !form) return;
    try { texts = JSON.parse(option.dataset.placeholders); } catch (e) { return; }
    Object.keys(texts).forEach(function (name) { var field = form.elements[name]; if (field) field.placeholder = texts[name]; });
  }
  document.addEventListener("change", function (event) { if (event.target.tagName === "SELECT") placeholders(event.target); });
  Array.prototype.forEach.call(document.querySelectorAll("form.api-form select"), placeholders);

  function messages(status, payload) {
    if (payload && typeof payload === "object" && !Array.isArray(payload)) {
      var out = [];
      Object.keys(payload).forEach(function (key) {
        var value = payload[key];
        if (value && typeof value === "object" && !Array.isArray(value)) {  // {"driver_config": {"version": [...]}}
          messages(status, value).forEach(function (line) { out.push(key + "." + line); });
          return;
        }
        var text = Array.isArray(value) ? value.join(" ") : String(value);
        out.push(key === "detail" || key === "non_field_errors" ? text : key + ": " + text);
      });
      if (out.length) return out;
    }
    return ["the request failed (" + status + ")"];
  }

  function send(el, method, url, data) {
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    var options = { method: method, credentials: "same-origin", headers: { "X-CSRFToken": csrf(), "Accept": "application/json" } };
    if (data !== undefined) { options.headers["Content-Type"] = "application/json"; options.body = JSON.stringify(data); }
    fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var payload = null;
        try { payload = text ? JSON.parse(text) : null; } catch (e) { payload = null; }
        if (!response.ok) { show(el.closest("form") || el.parentNode, messages(response.status, payload)); return; }
        var then = el.dataset.then || "reload";
        if (then === "stay") return;  // the live updates show the result
        if (then === "report") { report(el.closest("form") || el.parentNode, payload); return; }
        if (then.indexOf("go:") === 0) location.href = then.slice(3).replace("{id}", payload && payload.id);
        else location.reload();
      });
    }).catch(function () { show(el.closest("form") || el.parentNode, ["Corral did not answer; try again"]); });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList.contains("api-form")) {
      var asked = event.submitter && event.submitter.dataset.confirm;  // a plain form that asks first
      if (asked && !window.confirm(asked)) event.preventDefault();
      return;
    }
    event.preventDefault();
    var request;
    try { request = body(form); } catch (e) { show(form, [e.message]); return; }
    send(form, form.dataset.method || "POST", request.url, request.data);
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-api]");
    if (!button) return;
    event.preventDefault();
    send(button, button.dataset.method || "POST", button.dataset.api, button.dataset.body ? JSON.parse(button.dataset.body) : undefined);
  });
})();
