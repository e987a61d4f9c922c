// Carnet portals: small enhancements only; every essential action works without JavaScript.
(function () {
  "use strict";

  // Confirmation before destructive actions: <form data-confirm="message"> or <button data-confirm>.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    var message = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  // Countdowns: <time data-countdown="2026-11-23T18:00:00Z"> shows the time left (mm:ss or h:mm:ss).
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var nodes = document.querySelectorAll("time[data-countdown]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var left = Math.max(0, Math.floor((Date.parse(node.getAttribute("data-countdown")) - Date.now()) / 1000));
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      node.textContent = (h > 0 ? h + ":" + pad(m) : m) + ":" + pad(s);
      if (left === 0 && node.hasAttribute("data-expired-reload") && !node.dataset.done) {
        node.dataset.done = "1";
        window.location.reload();
      }
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    window.setInterval(tick, 1000);
  });

  // After htmx swapped an answer in: the focus goes where the answer asks (data-focus-here), so that a
  // keyboard user whose button disappeared with the action stays next to its result.
  document.addEventListener("htmx:afterSettle", function () {
    var target = document.querySelector("[data-focus-here]");
    if (target) {
      target.removeAttribute("data-focus-here");
      target.focus();
    }
  });

  // Auto-submit selects marked data-autosubmit (the submit button stays for users without JavaScript).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.hasAttribute && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.requestSubmit ? target.form.requestSubmit() : target.form.submit();
    }
  });
})();
