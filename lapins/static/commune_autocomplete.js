// Address fields' commune suggestions (templates/admin/_commune_field.html): an ARIA 1.2 combobox over GET /communes.
// Arrow keys move through the suggestions, Enter chooses one (its INSEE code goes to the hidden field), Escape
// closes them; typing again clears the chosen code, so the server reads what was typed (as without JavaScript).
(function () {
  "use strict";
  var DELAY_MS = 200;

  function setUp(group, index) {
    var input = group.querySelector("input.fr-input");
    var code = group.querySelector("input[type=hidden]");
    if (!input || !code) { return; }
    var list = document.createElement("ul");
    var status = document.createElement("p");
    list.id = "commune-suggestions-" + index;
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "Communes suggérées");
    list.className = "lapins-commune__list";
    list.hidden = true;
    status.className = "fr-sr-only";
    status.setAttribute("role", "status");
    group.appendChild(list);
    group.appendChild(status);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", list.id);
    var found = [], active = -1, timer = null, asked = 0;

    function close() {
      list.hidden = true;
      active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }

    function choose(i) {
      var commune = found[i];
      input.value = commune.label;
      code.value = commune.code;
      status.textContent = commune.label + " choisie.";
      close();
    }

    function highlight(i) {
      var items = list.children;
      for (var k = 0; k < items.length; k++) { items[k].setAttribute("aria-selected", k === i ? "true" : "false"); }
      active = i;
      if (i >= 0) {
        input.setAttribute("aria-activedescendant", items[i].id);
        items[i].scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function show(communes) {
      found = communes;
      list.textContent = "";
      communes.forEach(function (commune, i) {
        var item = document.createElement("li");
        item.id = list.id + "-" + i;
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", "false");
        item.textContent = commune.label + (commune.postcodes.length > 1 ? " — " + commune.postcodes.join(", ") : "");
        item.addEventListener("mousedown", function (event) { event.preventDefault(); choose(i); });
        list.appendChild(item);
      });
      status.textContent = communes.length ? communes.length + " commune(s) suggérée(s)." : "Aucune commune trouvée.";
      list.hidden = !communes.length;
      input.setAttribute("aria-expanded", communes.length ? "true" : "false");
      active = -1;
    }

    function ask() {
      var query = input.value.trim();
      if (query.length < 2) { close(); return; }
      var mine = ++asked;
      var url = group.getAttribute("data-commune-search");
      fetch(url + (url.indexOf("?") < 0 ? "?" : "&") + "q=" + encodeURIComponent(query), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : { communes: [] }; })
        .then(function (body) { if (mine === asked) { show(body.communes || []); } })
        .catch(function () { close(); });
    }

    input.addEventListener("input", function () {
      code.value = "";
      clearTimeout(timer);
      timer = setTimeout(ask, DELAY_MS);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" && found.length) {
        if (list.hidden) { list.hidden = false; input.setAttribute("aria-expanded", "true"); }
        highlight(Math.min(active + 1, found.length - 1));
        event.preventDefault();
      } else if (event.key === "ArrowUp" && !list.hidden) {
        highlight(Math.max(active - 1, 0));
        event.preventDefault();
      } else if (event.key === "Enter" && !list.hidden && active >= 0) {
        choose(active);
        event.preventDefault();
      } else if (event.key === "Escape" && !list.hidden) {
        close();
        event.preventDefault();
      }
    });
    input.addEventListener("blur", close);
  }

  document.querySelectorAll("[data-commune-search]").forEach(setUp);
})();
