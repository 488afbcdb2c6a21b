// The booking form's SMS preview: redrawn by the server (the outbox's own composer) when the motif, lieu, day or
// time changes, so the agent sees the text and its SMS count before booking.
(function () {
  "use strict";

  var region = document.getElementById("apercu-sms");
  if (!region) return;
  var form = region.closest("form");
  var fields = ["motif_id", "lieu_id", "day", "start_time"];
  var pending = null;

  function refresh() {
    var query = new URLSearchParams();
    fields.forEach(function (name) {
      var field = form.elements[name];
      if (field && field.value) query.set(name, field.value);
    });
    form.querySelectorAll("input[name=usager_ids]:checked").forEach(function (box) {
      query.append("usager_ids", box.value);
    });
    if (pending) pending.abort();
    pending = new AbortController();
    fetch(region.dataset.previewUrl + "?" + query, { credentials: "same-origin", signal: pending.signal })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response); })
      .then(function (html) { region.innerHTML = html; })
      .catch(function () {});
  }

  form.addEventListener("change", function (event) {
    if (fields.indexOf(event.target.name) >= 0 || event.target.name === "usager_ids") refresh();
  });
})();
