// A shell in a container: xterm.js (vendored) over the websocket protocol kubectl uses
// (v5.channel.k8s.io: one byte of channel, then data; 0 stdin, 1 stdout, 2 stderr, 3 error,
// 4 resize), through Corral's proxy with the page's session.
(function () {
  "use strict";
  var box = document.getElementById("terminal");
  if (!box || !window.Terminal) { return; }
  var base = box.dataset.proxy + box.dataset.path;
  var select = document.getElementById("shell-container");
  var command = document.getElementById("shell-command");
  var status = document.getElementById("shell-status");
  var term = new window.Terminal({ cols: 120, rows: 32, convertEol: true });
  term.open(box);
  var socket = null;
  var pending = [];  // keys typed while connecting, sent once the socket is open
  var encoder = new TextEncoder();

  function frame(channel, text) {
    var data = encoder.encode(text);
    var bytes = new Uint8Array(data.length + 1);
    bytes[0] = channel;
    bytes.set(data, 1);
    return bytes;
  }

  function send(channel, text) {
    if (!socket || socket.readyState > 1) { return; }
    if (socket.readyState === 0) { pending.push(frame(channel, text)); return; }
    socket.send(frame(channel, text));
  }

  term.onData(function (data) { send(0, data); });

  function connect() {
    if (socket) { socket.close(); }
    pending = [];
    term.reset();
    var query = new URLSearchParams({ container: select.value, stdin: "true", stdout: "true", tty: "true" });
    command.value.split(/\s+/).filter(Boolean).forEach(function (part) { query.append("command", part); });
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + base + "/exec?" + query.toString(), ["v5.channel.k8s.io", "v4.channel.k8s.io"]);
    socket = ws;
    ws.binaryType = "arraybuffer";
    status.textContent = "connecting…";
    ws.onopen = function () {
      status.textContent = "connected";
      ws.send(frame(4, JSON.stringify({ Width: term.cols, Height: term.rows })));
      pending.splice(0).forEach(function (bytes) { ws.send(bytes); });
      term.focus();
    };
    ws.onmessage = function (event) {
      var bytes = new Uint8Array(event.data);
      if (!bytes.length) { return; }
      var text = new TextDecoder().decode(bytes.subarray(1));
      if (bytes[0] === 1 || bytes[0] === 2) { term.write(text); }
      if (bytes[0] === 3 && text) {
        try { var s = JSON.parse(text); if (s.status !== "Success") { status.textContent = s.message || text; } } catch (e) { status.textContent = text; }
      }
    };
    ws.onclose = function () {
      if (ws !== socket) { return; }
      if (status.textContent === "connecting…") { status.textContent = "refused (no access, or the pod is gone)"; }
      else if (status.textContent === "connected") { status.textContent = "closed"; }
    };
  }

  fetch(base, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (r) { return r.json(); })
    .then(function (pod) {
      ((pod.spec && pod.spec.containers) || []).forEach(function (c) {
        var option = document.createElement("option");
        option.value = option.textContent = c.name;
        select.appendChild(option);
      });
      if (!select.options.length) { status.textContent = pod.message || "no containers"; }
    });
  document.getElementById("shell-options").addEventListener("submit", function (e) { e.preventDefault(); connect(); });
})();
