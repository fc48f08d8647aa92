/* Progressive behaviour of the settings page; the forms work without it.
 * - action forms are sent with fetch (Accept: application/json): a toast on
 *   success (the page is then loaded again with its notice), the error in words
 *   otherwise, next to the field it is about;
 * - while the status moves on its own (data-polling="true") the page asks
 *   data-status-url every data-poll-ms; when the answer changes it fetches the
 *   page (data-page-url) and swaps the content of <main> in place (no reload,
 *   no navigation: what is typed in the domain field stays); it stops once the
 *   status is terminal;
 * - copy buttons for the DNS records.
 * Handlers are delegated to <main>, so they hold for swapped-in content too. */
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main) { return; }

  function toast(message, kind) {
    var ok = document.getElementById("toast");
    var bad = document.getElementById("toast-error");
    if (!ok || !bad) { return; }
    var el = kind === "error" ? bad : ok;
    var other = kind === "error" ? ok : bad;
    other.className = "toast";
    other.textContent = "";
    el.textContent = message;
    el.className = "toast toast-show " + (kind === "error" ? "toast-error" : "toast-success");
  }

  // A notice from the redirect after an action: shown by the server; drop it from the URL.
  if (window.location.search.indexOf("notice=") !== -1 && window.history.replaceState) {
    var params = new URLSearchParams(window.location.search);
    params.delete("notice");
    var rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }

  function fieldError(message) {
    var input = document.getElementById("client-portal-domain-input");
    var slot = document.getElementById("client-portal-domain-error");
    if (!input || !slot) { return; }
    slot.textContent = message;
    slot.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "client-portal-domain-hint client-portal-domain-error");
    input.focus();
  }

  main.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form.js-action")) { return; }
    event.preventDefault();
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { return; }
    var buttons = form.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    fetch(form.getAttribute("action"), {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (result) {
      if (result.ok && result.body.redirect) {
        toast(result.body.message, "success");
        window.location.assign(result.body.redirect);
        return;
      }
      var error = (result.body && result.body.error) || {};
      var message = error.message || "Something went wrong. Try again.";
      toast(message, "error");
      if (error.field === "domain") { fieldError(message); }
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
    }).catch(function () {
      toast("The server could not be reached. Check your connection and try again.", "error");
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
    });
  });

  // Copy buttons work with script only: shown by enhance() (again after each swap).
  function enhance() {
    Array.prototype.forEach.call(main.querySelectorAll("button.copy"), function (button) {
      button.hidden = false;
    });
  }
  enhance();
  main.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) { return; }
    var input = document.getElementById(button.getAttribute("data-copy"));
    if (!input) { return; }
    function copied() { toast("Copied: " + input.value, "success"); }
    function manual() {
      input.focus();
      input.select();
      toast("Press Ctrl+C (or long-press and Copy) to copy the selected record.", "success");
    }
    if (!navigator.clipboard || !window.isSecureContext) { manual(); return; }
    // A browser may leave the permission question open: do not wait for ever.
    var settled = false;
    function once(fn) { return function () { if (!settled) { settled = true; fn(); } }; }
    navigator.clipboard.writeText(input.value).then(once(copied), once(manual));
    window.setTimeout(once(manual), 1500);
  });

  // Polling while the status moves on its own.
  var timer = null;
  function statusUrl() { return main.getAttribute("data-status-url"); }
  function interval() { return parseInt(main.getAttribute("data-poll-ms"), 10) || 15000; }
  function setState(state) { main.setAttribute("data-poll-state", state); }
  function schedule(delay) {
    timer = window.setTimeout(poll, delay);
    setState("scheduled");
  }
  function stop() {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    setState("stopped");
  }
  function sessionEnded() {
    stop();
    toast("Your session has ended. Open this page from the application again.", "error");
  }
  // Poll again (or stop) as the page now in <main> says.
  function follow() {
    if (statusUrl() && main.getAttribute("data-polling") === "true") {
      schedule(interval());
    } else {
      stop();
    }
  }

  // The page as the server renders it now, put in place of the current content.
  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var next = fresh.getElementById("main");
    if (!next) { return false; }
    var input = document.getElementById("client-portal-domain-input");
    var typed = input ? input.value : "";
    var focused = document.activeElement && document.activeElement.id;
    Array.prototype.slice.call(main.attributes).forEach(function (attr) {
      if (!next.hasAttribute(attr.name)) { main.removeAttribute(attr.name); }
    });
    Array.prototype.forEach.call(next.attributes, function (attr) {
      main.setAttribute(attr.name, attr.value);
    });
    main.replaceChildren.apply(main, Array.prototype.slice.call(next.childNodes).map(
      function (node) { return document.importNode(node, true); }
    ));
    var csrf = fresh.querySelector("meta[name=csrf-token]");
    var mine = document.querySelector("meta[name=csrf-token]");
    if (csrf && mine) { mine.setAttribute("content", csrf.getAttribute("content")); }
    if (fresh.title) { document.title = fresh.title; }
    enhance();
    var field = document.getElementById("client-portal-domain-input");
    if (field && typed && !field.value) { field.value = typed; }
    if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
    return true;
  }

  function rerender() {
    setState("updating");
    var url = main.getAttribute("data-page-url") || (window.location.pathname + window.location.search);
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) { sessionEnded(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) {
          if (main.getAttribute("data-poll-state") !== "stopped") { schedule(interval() * 2); }
          return;
        }
        if (swap(html)) { follow(); } else { schedule(interval() * 2); }
      })
      .catch(function () { schedule(interval() * 2); });
  }

  function poll() {
    timer = null;
    setState("polling");
    fetch(statusUrl(), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { sessionEnded(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (body === null) {
          if (main.getAttribute("data-poll-state") !== "stopped") { schedule(interval() * 2); }
          return;
        }
        if (body.fingerprint !== main.getAttribute("data-fingerprint")) {
          rerender();
          return;
        }
        if (body.polling) { schedule(interval()); } else { stop(); }
      })
      .catch(function () { schedule(interval() * 2); });
  }
  if (statusUrl() && main.getAttribute("data-polling") === "true") {
    schedule(interval());
  } else if (statusUrl()) {
    setState("stopped");
  }
})();
