// surveyhooks portal: the little the pages need beyond HTML — confirmation before destructive
// forms, a copy button, and a busy label while Send Test waits. Every page works without it.
"use strict";
document.addEventListener("submit", function (e) {
  var form = e.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    e.preventDefault();
    return;
  }
  var busy = form.getAttribute("data-busy");
  if (busy) {
    var button = form.querySelector("button[type=submit]");
    if (button) {
      button.textContent = busy;
      button.setAttribute("aria-busy", "true");
      // Disabled after this event, so the button's own submission still happens.
      setTimeout(function () { button.disabled = true; }, 0);
    }
  }
});
document.addEventListener("click", function (e) {
  var button = e.target.closest("[data-copy]");
  if (!button) return;
  var field = document.getElementById(button.getAttribute("data-copy"));
  if (!field) return;
  field.select();
  var done = function () { button.textContent = "Copied"; };
  if (navigator.clipboard) {
    navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
  } else {
    document.execCommand("copy");
    done();
  }
});
