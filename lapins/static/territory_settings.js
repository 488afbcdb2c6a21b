// The territory settings page: the time zone warning, and the live preview of the SMS wording.
// The preview is composed by the server (the real lapins.notifications.sms_text.compose), never here.
(function () {
  "use strict";

  var timezone = document.getElementById("timezone");
  var warning = document.getElementById("alerte-fuseau");
  if (timezone && warning) {
    timezone.addEventListener("change", function () {
      warning.hidden = timezone.value === timezone.dataset.initial;
    });
  }

  // The cost sentence: its live count on the territory's longest reminder, also composed by the server.
  var costContainer = document.getElementById("apercu-cout");
  var costInput = document.querySelector("[data-sms-cost]");
  if (costContainer && costInput) {
    var costTimer = null;
    var costAsked = 0;
    var costToken = document.querySelector('meta[name="csrf-token"]').content;
    costInput.addEventListener("input", function () {
      window.clearTimeout(costTimer);
      costTimer = window.setTimeout(function () {
        var number = ++costAsked;
        fetch(costContainer.dataset.previewUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": costToken },
          body: JSON.stringify({ cost: costInput.value }),
        })
          .then(function (response) {
            if (!response.ok) throw new Error("HTTP " + response.status);
            return response.json();
          })
          .then(function (data) {
            if (number === costAsked) costContainer.innerHTML = data.html; // escaped by the server's template
          })
          .catch(function () {
            if (number === costAsked) costContainer.textContent = "Aperçu indisponible pour le moment.";
          });
      }, 200);
    });
  }

  var container = document.getElementById("apercu-sms");
  var label = document.querySelector('[data-sms-wording="label"]');
  if (!container || !label) return;
  var csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  var kind = "reminder";
  var timer = null;
  var asked = 0;

  function noteField() {
    return document.querySelector('[data-sms-wording="' + kind + '"]');
  }

  function refresh() {
    var number = ++asked;
    fetch(container.dataset.previewUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify({ kind: kind, label: label.value, note: noteField().value }),
    })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (number === asked) container.innerHTML = data.html; // escaped by the server's template
      })
      .catch(function () {
        if (number === asked) container.textContent = "Aperçu indisponible pour le moment.";
      });
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 200);
  }

  document.querySelectorAll("[data-sms-wording]").forEach(function (input) {
    input.addEventListener("input", function () {
      if (input.dataset.smsWording !== "label") kind = input.dataset.smsWording;
      later();
    });
    input.addEventListener("focus", function () {
      if (input.dataset.smsWording !== "label" && input.dataset.smsWording !== kind) {
        kind = input.dataset.smsWording;
        refresh();
      }
    });
  });
})();
