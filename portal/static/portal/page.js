// Every page: the menu button of narrow screens, and the one date format (what the `when` template
// filter renders: relative words, the exact local time on hover), kept current every 30 seconds.
(function () {
  "use strict";
  var header = document.querySelector("header.top");
  var toggle = document.getElementById("menu-toggle");
  if (header && toggle) {
    header.classList.add("collapsible");  // without this script the menu simply stays open
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      var open = header.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  // Django's timesince with depth=1 (django/utils/timesince.py), in the same words.
  var UNITS = [["year", 0], ["month", 0], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
  var MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

  function since(d, now) {
    var seconds = Math.floor((now - d) / 1000);
    if (seconds <= 0) return "0\u00a0minutes";
    var months = (now.getUTCFullYear() - d.getUTCFullYear()) * 12 + (now.getUTCMonth() - d.getUTCMonth());
    var dTime = ((d.getUTCHours() * 60 + d.getUTCMinutes()) * 60 + d.getUTCSeconds()) * 1000 + d.getUTCMilliseconds();
    var nowTime = ((now.getUTCHours() * 60 + now.getUTCMinutes()) * 60 + now.getUTCSeconds()) * 1000 + now.getUTCMilliseconds();
    if (d.getUTCDate() > now.getUTCDate() || (d.getUTCDate() === now.getUTCDate() && dTime > nowTime)) months -= 1;
    var years = Math.floor(months / 12), rest = months % 12, pivot = d;
    if (years || rest) {
      var y = d.getUTCFullYear() + years, m = d.getUTCMonth() + rest;
      if (m > 11) { m -= 12; y += 1; }
      pivot = new Date(Date.UTC(y, m, Math.min(MONTH_DAYS[m], d.getUTCDate()), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()));
    }
    var remaining = Math.floor((now - pivot) / 1000), parts = [years, rest];
    UNITS.slice(2).forEach(function (unit) { var n = Math.floor(remaining / unit[1]); parts.push(n); remaining -= n * unit[1]; });
    for (var i = 0; i < parts.length; i++) {
      if (parts[i]) return parts[i] + "\u00a0" + UNITS[i][0] + (parts[i] === 1 ? "" : "s");
    }
    return "0\u00a0minutes";
  }

  function words(d, now) {
    if (d <= now) return now - d < 60000 ? "just now" : since(d, now) + " ago";
    return "in " + since(now, d);
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function zone(d) {
    try {
      var part = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(d).filter(function (p) { return p.type === "timeZoneName"; })[0];
      return part ? part.value : "";
    } catch (e) { return ""; }
  }
  function exact(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zone(d);
  }

  function refresh(root) {
    var now = new Date();
    (root || document).querySelectorAll("time.when[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var text = words(d, now), title = exact(d);
      if (el.textContent !== text) el.textContent = text;
      if (el.title !== title) el.title = title;
    });
  }

  // The element the `when` filter renders, for a live update: same words, same title.
  function when(value, empty) {
    if (!value) return document.createTextNode(empty == null ? "never" : empty);
    var d = new Date(value);
    if (isNaN(d)) return document.createTextNode(String(value));
    var el = document.createElement("time");
    el.className = "when";
    el.setAttribute("datetime", value);
    el.textContent = words(d, new Date());
    el.title = exact(d);
    return el;
  }

  window.Corral = window.Corral || {};
  window.Corral.when = when;
  window.Corral.refreshTimes = refresh;
  refresh(document);
  setInterval(function () { refresh(document); }, 30000);
})();
