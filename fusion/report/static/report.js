/* vocalfusion report: optional enhancements. The page reads fully without this script.
   Inputs come only from data- attributes and element text; nothing is parsed as HTML. */
(function () {
  "use strict";
  var player = document.getElementById("player");
  var stopAt = null;
  var byIndex = {};
  var marked = [];

  Array.prototype.forEach.call(document.querySelectorAll("[data-i]"), function (el) {
    var i = el.getAttribute("data-i");
    (byIndex[i] = byIndex[i] || []).push(el);
  });

  function mark(i) {
    marked.forEach(function (el) { el.classList.remove("hl"); });
    marked = byIndex[i] || [];
    marked.forEach(function (el) { el.classList.add("hl"); });
  }

  function tipText(el) {
    var t = el.querySelector("title");
    return t ? t.textContent : (el.getAttribute("aria-label") || el.textContent || "");
  }

  function show(el) {
    var fig = el.closest("figure");
    var out = fig ? fig.querySelector(".readout") : null;
    if (out) { out.textContent = tipText(el); }
    mark(el.getAttribute("data-i"));
  }

  function play(el) {
    if (!player) { return; }
    var start = parseFloat(el.getAttribute("data-start"));
    var end = parseFloat(el.getAttribute("data-end"));
    if (!isFinite(start)) { return; }
    stopAt = isFinite(end) ? end : null;
    try {
      player.currentTime = start;
      var p = player.play();
      if (p && p.catch) { p.catch(function () {}); }
    } catch (e) { /* media not ready */ }
  }

  Array.prototype.forEach.call(document.querySelectorAll(".seg, .ts"), function (el) {
    el.addEventListener("mouseenter", function () { show(el); });
    el.addEventListener("focus", function () { show(el); });
    el.addEventListener("click", function () { show(el); play(el); });
    el.addEventListener("keydown", function (ev) {
      if (el.tagName !== "BUTTON" && (ev.key === "Enter" || ev.key === " ")) {
        ev.preventDefault(); show(el); play(el);
      }
    });
  });

  Array.prototype.forEach.call(document.querySelectorAll("tr[data-i]"), function (row) {
    row.addEventListener("mouseenter", function () { mark(row.getAttribute("data-i")); });
  });

  if (player) {
    var rows = Array.prototype.slice.call(document.querySelectorAll(".transcript li[data-i]"));
    var playing = null;
    player.addEventListener("timeupdate", function () {
      var t = player.currentTime;
      if (stopAt !== null && t >= stopAt) { player.pause(); stopAt = null; }
      var now = null;
      for (var k = 0; k < rows.length; k++) {
        var s = parseFloat(rows[k].getAttribute("data-start"));
        var e = parseFloat(rows[k].getAttribute("data-end"));
        if (t >= s && t < e) { now = rows[k]; break; }
      }
      if (now !== playing) {
        if (playing) { playing.classList.remove("playing"); }
        if (now) { now.classList.add("playing"); }
        playing = now;
      }
    });
    player.addEventListener("seeking", function () {
      if (stopAt !== null && player.currentTime > stopAt) { stopAt = null; }
    });
  }
})();
