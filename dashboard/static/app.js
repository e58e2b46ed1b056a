// hueyard dashboard: theme toggle and auto-refresh. The only script on any page
// (the Content-Security-Policy allows no inline script).
(function () {
  "use strict";
  var root = document.documentElement;
  var THEME = "hueyard-theme";
  var REFRESH = "hueyard-refresh";

  function read(key) {
    try { return window.localStorage.getItem(key) || ""; } catch (e) { return ""; }
  }
  function write(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* private mode */ }
  }

  function applyTheme(theme) {
    if (theme) { root.setAttribute("data-theme", theme); } else { root.removeAttribute("data-theme"); }
  }
  applyTheme(read(THEME));

  // "?done=..." says what an action did, once: a refresh must not say it again.
  if (window.history.replaceState && /[?&]done=/.test(window.location.search)) {
    var params = new URLSearchParams(window.location.search);
    ["done", "n", "schedule", "job"].forEach(function (name) { params.delete(name); });
    var query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme");
    if (button) {
      var order = ["", "dark", "light"];
      var names = { "": "auto", dark: "dark", light: "light" };
      var label = function () { button.textContent = "Theme: " + names[read(THEME)]; };
      label();
      button.addEventListener("click", function () {
        var next = order[(order.indexOf(read(THEME)) + 1) % order.length];
        write(THEME, next);
        applyTheme(next);
        label();
      });
    }

    var select = document.getElementById("refresh");
    if (!select) { return; }
    var timer = null;
    var busy = function () {
      var el = document.activeElement;
      return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA") ;
    };
    var arm = function () {
      if (timer) { window.clearTimeout(timer); timer = null; }
      var seconds = parseInt(select.value, 10);
      if (!seconds) { return; }
      timer = window.setTimeout(function tick() {
        if (busy()) { timer = window.setTimeout(tick, seconds * 1000); return; }
        window.location.reload();
      }, seconds * 1000);
    };
    var saved = read(REFRESH);
    if (saved && select.querySelector('option[value="' + saved + '"]')) { select.value = saved; }
    select.addEventListener("change", function () { write(REFRESH, select.value); arm(); });
    arm();
  });
})();
