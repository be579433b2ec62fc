// atna dashboard: comfort only. Every page works without this script.
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // The suggested key name: <service_name>-<dd_mm_yyyy>-<hh_mm>, in the browser's time zone.
  function stamp(d) {
    return pad(d.getDate()) + "_" + pad(d.getMonth() + 1) + "_" + d.getFullYear() + "-" + pad(d.getHours()) + "_" + pad(d.getMinutes());
  }
  var CONVENTION = /^.*\S.*-(\d\d)_(\d\d)_(\d{4})-(\d\d)_(\d\d)$/;
  function follows(name) {
    var m = CONVENTION.exec(name.trim());
    if (!m) return false;
    var d = +m[1], mo = +m[2], y = +m[3], h = +m[4], mi = +m[5];
    var date = new Date(y, mo - 1, d);
    return date.getFullYear() === y && date.getMonth() === mo - 1 && date.getDate() === d && h < 24 && mi < 60;
  }

  function setupNameField() {
    var input = document.querySelector("input[data-convention]");
    if (!input) return;
    var warning = document.getElementById("name-warning");
    var prefix = "service_name-";
    // Switch the server's UTC suggestion to local time, unless the person already typed something else.
    if (input.value.indexOf(prefix) === 0 && !input.hasAttribute("aria-invalid")) {
      input.value = prefix + stamp(new Date());
    }
    function check() {
      if (warning) warning.hidden = input.value.trim() === "" || follows(input.value);
    }
    input.addEventListener("input", check);
    check();

    // "Service name": typing it fills the name in as <service>-<dd_mm_yyyy>-<hh_mm>, until the name is edited by hand.
    // A whole conventional name typed there (people following "Provide a name for the key" type it into the first
    // box) already ends in a date and time: it becomes the name as it is, never stamped twice.
    var service = document.getElementById("service");
    var serviceField = document.getElementById("service-field");
    if (!service || !serviceField) return;
    serviceField.hidden = false;
    var composed = input.value;
    service.addEventListener("input", function () {
      if (input.value !== composed) return;
      var s = service.value.trim().replace(/\s+/g, "_");
      composed = follows(s) ? s : (s || "service_name") + "-" + stamp(new Date());
      input.value = composed;
      check();
    });
  }

  // The roll page: the new key's name with the date and time in the browser's time zone.
  function setupRollName() {
    var input = document.querySelector("input[data-roll-service]");
    if (!input || input.hasAttribute("aria-invalid")) return;
    var service = input.getAttribute("data-roll-service");
    if (service) input.value = service + "-" + stamp(new Date());
  }

  function setupCopyButtons() {
    var buttons = document.querySelectorAll("button[data-copy]");
    Array.prototype.forEach.call(buttons, function (b) {
      var target = document.getElementById(b.getAttribute("data-copy"));
      if (!target) return;
      b.hidden = false;
      b.addEventListener("click", function () {
        var text = target.value;
        var done = function () {
          b.textContent = "Copied";
          setTimeout(function () { b.textContent = "Copy"; }, 2000);
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { target.select(); });
        } else {
          target.select();
          try { document.execCommand("copy"); done(); } catch (e) { /* selected: the person can copy it */ }
        }
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("input[readonly], textarea[readonly]"), function (el) {
      el.addEventListener("focus", function () { el.select(); });
    });
  }

  // The secret must not survive in the back/forward cache: wipe it when the page is left.
  function setupSecretPage() {
    if (!document.querySelector("[data-secret-page]")) return;
    window.addEventListener("pagehide", function () {
      Array.prototype.forEach.call(document.querySelectorAll("[data-secret]"), function (el) { el.value = ""; el.textContent = ""; });
    });
    window.addEventListener("pageshow", function (e) {
      if (e.persisted) window.location.replace("/keys");
    });
  }

  // Menus: arrow keys move between entries, Escape closes an open <details> menu, a click elsewhere closes it too.
  function setupMenus() {
    document.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        var menu = document.activeElement && document.activeElement.closest ? document.activeElement.closest("details.menu[open]") : null;
        if (!menu) return;
        var items = Array.prototype.slice.call(menu.querySelectorAll("[role=menuitem]"));
        if (!items.length) return;
        var at = items.indexOf(document.activeElement);
        var next = e.key === "ArrowDown" ? (at + 1) % items.length : (at <= 0 ? items.length - 1 : at - 1);
        items[next].focus();
        e.preventDefault();
        return;
      }
      if (e.key !== "Escape") return;
      Array.prototype.forEach.call(document.querySelectorAll("details.menu[open]"), function (d) {
        d.open = false;
        var s = d.querySelector("summary");
        if (s) s.focus();
      });
    });
    document.addEventListener("click", function (e) {
      Array.prototype.forEach.call(document.querySelectorAll("details.menu[open]"), function (d) {
        if (!d.contains(e.target)) d.open = false;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupNameField();
    setupRollName();
    setupCopyButtons();
    setupSecretPage();
    setupMenus();
  });
})();
