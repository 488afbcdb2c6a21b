// Lapins agenda: FullCalendar for an agent's week/day and for the agents of a lieu side by side.
// Times are the territory's wall-clock times written without offset, with FullCalendar in 'UTC' ("fake UTC"):
// the server alone converts to and from real instants (see lapins/agenda/calendar.py).
(function () {
  "use strict";

  var csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  var calendars = [];

  function wallClock(date) {
    return date.toISOString().slice(0, 19);
  }

  // The live region stays in the page so that screen readers hear what is put in it.
  function announce(message, kind) {
    var region = document.getElementById("agenda-annonce");
    region.replaceChildren();
    if (!message) return;
    var alert = document.createElement("div");
    var text = document.createElement("p");
    alert.className = "fr-alert fr-alert--" + (kind || "success") + " fr-alert--sm fr-mb-2w";
    text.textContent = message;
    alert.appendChild(text);
    region.appendChild(alert);
  }

  // --- Free hours: links in the grid, reachable with Tab ----------------------------------------------------------
  // The feed gives the openings (background) and the rdvs; the free hours are the openings minus what takes the
  // agent's time, cut on the grid's half-hours. Each is a link to the booking form at that time, so the keyboard
  // reaches them in the grid's order (day by day, hour by hour) and Enter books.

  var HALF_HOUR = 30 * 60000;
  var spoken = new Intl.DateTimeFormat("fr-FR", {
    timeZone: "UTC", weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit",
  });

  function instant(text) {
    return new Date(text.length > 19 ? text : text + "Z");
  }

  function freeSlots(events, settings, now) {
    var busy = events.filter(function (event) {
      var props = event.extendedProps || {};
      if (props.kind === "rdv") return ["excused", "revoked"].indexOf(props.status) < 0;
      return props.kind === "absence" || props.kind === "ferie";
    }).map(function (event) { return [instant(event.start), instant(event.end)]; });
    var free = [];
    events.forEach(function (event) {
      var props = event.extendedProps || {};
      if (props.kind !== "plage") return;
      if (settings.lieuId && String(props.lieuId) !== settings.lieuId) return;
      var end = instant(event.end);
      for (var start = instant(event.start); start < end; start = new Date(start.getTime() + HALF_HOUR)) {
        var stop = new Date(Math.min(start.getTime() + HALF_HOUR, end.getTime()));
        var taken = busy.some(function (interval) { return interval[0] < stop && start < interval[1]; });
        if (taken || stop <= now) continue;
        var query = new URLSearchParams({ debut: wallClock(start) });
        if (props.lieuId) query.set("lieu_id", props.lieuId);
        free.push({
          id: "libre-" + (settings.agentId || "") + "-" + wallClock(start),
          title: "Libre",
          start: wallClock(start),
          end: wallClock(stop),
          url: settings.newRdvUrl + "?" + query,
          editable: false,
          classNames: ["lapins-libre"],
          extendedProps: { kind: "libre" },
        });
      }
    });
    return free;
  }

  function eventSource(url, settings, now) {
    return function (info, success, failure) {
      var query = new URLSearchParams({ start: wallClock(info.start), end: wallClock(info.end) });
      fetch(url + "?" + query, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (events) { success(events.concat(freeSlots(events, settings, now()))); })
        .catch(function (error) {
          announce("Le chargement de l'agenda a échoué. Vérifiez votre connexion puis rechargez la page.", "error");
          failure(error);
        });
    };
  }

  // --- Moving an rdv -------------------------------------------------------------------------------------------

  var modal = document.getElementById("deplacement-modal");
  var pendingMove = null;

  function showProblem(message, canForce) {
    document.getElementById("deplacement-message").textContent = message;
    document.getElementById("deplacement-forcer").hidden = !canForce;
    if (window.dsfr) {
      window.dsfr(modal).modal.disclose();
    } else {
      window.alert(message);
    }
  }

  function postMove(move) {
    var body = { starts_at: move.startsAt, force: move.force };
    if (move.agentId) {
      body.agent_id = move.agentId;
      body.from_agent_id = move.fromAgentId;
    }
    return fetch(move.url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().catch(function () {
        return { error: "La session a peut-être expiré : rechargez la page et recommencez." };
      }).then(function (data) { return { ok: response.ok, data: data }; });
    });
  }

  // After a move the calendars refetch their events and the accessible list under them is re-read from the page.
  function refreshAll() {
    calendars.forEach(function (calendar) { calendar.refetchEvents(); });
    var list = document.getElementById("liste-rdv");
    if (!list) return;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("liste-rdv");
        if (fresh) list.innerHTML = fresh.innerHTML;
      })
      .catch(function () {});
  }

  // --- Focus kept across refetches and page loads ------------------------------------------------------------------

  var FOCUS_KEY = "lapins-agenda-focus";
  var focusWanted = null;

  function rememberFocus(element) {
    var id = element && element.dataset ? element.dataset.eventId : null;
    focusWanted = id || null;
    try {
      if (id) sessionStorage.setItem(FOCUS_KEY, JSON.stringify({ path: location.pathname + location.search, id: id }));
    } catch (error) { /* private browsing: the focus is only kept within the page */ }
  }

  // Kept until the agent focuses something else: a refetch may draw the calendar twice (its old events, then the
  // fresh ones), and the focus must end on the fresh element.
  function restoreFocus(container) {
    if (!focusWanted) return;
    var target = container.querySelector('[data-event-id="' + CSS.escape(focusWanted) + '"]');
    if (target && document.activeElement !== target) target.focus();
  }

  try {
    var saved = JSON.parse(sessionStorage.getItem(FOCUS_KEY) || "null");
    if (saved && saved.path === location.pathname + location.search) focusWanted = saved.id;
    sessionStorage.removeItem(FOCUS_KEY);
  } catch (error) { /* nothing saved */ }

  document.addEventListener("focusin", function (event) {
    if (!event.target.dataset || event.target.dataset.eventId !== focusWanted) {
      focusWanted = null;  // the agent moved on: nothing to restore
    }
  });

  // « Aller au créneau libre suivant »: the first free hour after the focused one (or after now), across calendars.
  function nextFreeSlot() {
    var links = Array.prototype.slice.call(document.querySelectorAll(".lapins-calendrier a.lapins-libre"));
    if (!links.length) {
      announce("Aucune heure libre sur cette période : passez à la suivante.", "info");
      return;
    }
    var index = links.indexOf(document.activeElement);
    var next = links[(index + 1) % links.length];
    next.focus();
    next.scrollIntoView({ block: "center" });
  }

  document.querySelectorAll("[data-next-free]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", nextFreeSlot);
  });
  document.addEventListener("keydown", function (event) {
    // Alt+Maj+L (L comme « libre »): the same from anywhere in the page.
    if (event.altKey && event.shiftKey && (event.key === "L" || event.key === "l" || event.code === "KeyL")) {
      event.preventDefault();
      nextFreeSlot();
    }
  });

  function move(moveRequest, revert) {
    // Once the calendars are redrawn, the focus lands on the rdv just moved (or left in place).
    focusWanted = "rdv-" + moveRequest.rdvId;
    announce("");
    postMove(moveRequest).then(function (result) {
      if (result.ok) {
        announce(result.data.message);
        refreshAll();
        return;
      }
      revert();
      refreshAll();
      pendingMove = result.data.can_force ? moveRequest : null;
      showProblem(result.data.error || "Le rendez-vous n'a pas pu être déplacé.", Boolean(result.data.can_force));
    }, function () {
      revert();
      showProblem("Le serveur n'a pas répondu : le rendez-vous n'a pas été déplacé.", false);
    });
  }

  document.getElementById("deplacement-forcer").addEventListener("click", function () {
    if (!pendingMove) return;
    var forced = Object.assign({}, pendingMove, { force: true });
    pendingMove = null;
    if (window.dsfr) window.dsfr(modal).modal.conceal();
    move(forced, function () {});
  });

  function moveUrl(container, event) {
    return container.dataset.moveUrl.replace("__rdv__", event.extendedProps.rdvId);
  }

  // --- Calendars -------------------------------------------------------------------------------------------------

  function plageAt(calendar, start) {
    var found = calendar.getEvents().filter(function (event) {
      return event.extendedProps.kind === "plage" && event.start <= start && start < event.end;
    });
    return found.length ? found[0].extendedProps.lieuId : null;
  }

  function createCalendar(container, options) {
    var settings = container.dataset;
    var offsetMs = Number(settings.nowOffset) * 60000;
    var calendar = new FullCalendar.Calendar(container, Object.assign({
      timeZone: "UTC",
      locale: "fr",
      now: function () { return new Date(Date.now() + offsetMs); },
      initialDate: settings.date,
      headerToolbar: false,
      allDaySlot: false,
      height: "auto",
      slotMinTime: settings.slotMin,
      slotMaxTime: settings.slotMax,
      slotDuration: "00:30:00",
      slotLabelFormat: { hour: "2-digit", minute: "2-digit", hour12: false },
      eventTimeFormat: { hour: "2-digit", minute: "2-digit", hour12: false },
      snapDuration: "00:15:00",
      nowIndicator: true,
      editable: true,
      eventDurationEditable: false,
      selectable: true,
      selectMirror: true,
      events: eventSource(settings.eventsUrl, settings, function () { return new Date(Date.now() + offsetMs); }),
      // An rdv reads "09:30 Awa Diallo — Consultation": its start, then who and why, wrapping inside its box.
      eventContent: function (arg) {
        if (arg.event.extendedProps.kind !== "rdv") return true;
        var time = document.createElement("span");
        var title = document.createElement("span");
        time.className = "lapins-rdv__heure";
        time.textContent = arg.timeText.split(" - ")[0];
        title.className = "lapins-rdv__titre";
        title.textContent = arg.event.title;
        return { domNodes: [time, document.createTextNode(" "), title] };
      },
      eventDidMount: function (info) {
        var props = info.event.extendedProps;
        info.el.dataset.eventId = info.event.id;
        if (props.kind === "libre") {
          info.el.setAttribute("aria-label", "Heure libre le " + spoken.format(info.event.start) + " : prendre rendez-vous");
          info.el.addEventListener("click", function () { rememberFocus(info.el); });
          return;
        }
        if (props.kind !== "rdv") return;
        var details = [info.timeText, info.event.title, props.lieu].filter(Boolean).join(" · ");
        info.el.setAttribute("title", details);
      },
      select: function (info) {
        var lieuId = settings.lieuId || plageAt(calendar, info.start);
        var query = new URLSearchParams({ debut: wallClock(info.start) });
        if (lieuId) query.set("lieu_id", lieuId);
        window.location.href = settings.newRdvUrl + "?" + query;
      },
      // After a refetch (a move, a drop) the focus goes back to the event it was on, not to the top of the page.
      eventsSet: function () { restoreFocus(container); },
      eventDrop: function (info) {
        move({ url: moveUrl(container, info.event), rdvId: info.event.extendedProps.rdvId,
               startsAt: wallClock(info.event.start), force: false }, info.revert);
      },
    }, options || {}));
    calendar.render();
    calendars.push(calendar);
    return calendar;
  }

  var agentCalendar = document.getElementById("calendrier-agent");
  if (agentCalendar) {
    createCalendar(agentCalendar, {
      initialView: agentCalendar.dataset.view === "jour" ? "timeGridDay" : "timeGridWeek",
      hiddenDays: JSON.parse(agentCalendar.dataset.hiddenDays || "[]"),
      views: { timeGridDay: { dayHeaderFormat: { weekday: "long", day: "numeric", month: "long" } } },
    });
  }

  document.querySelectorAll(".lapins-colonne__calendrier").forEach(function (container) {
    createCalendar(container, {
      initialView: "timeGridDay",
      dayHeaders: false,
      droppable: true,
      // An rdv dropped on another agent's column is handed to that agent. The dropped copy is removed at once:
      // whatever the server answers, the refetch that follows shows the rdv where it really is.
      eventReceive: function (info) {
        info.revert();
        move({
          url: moveUrl(container, info.event),
          rdvId: info.event.extendedProps.rdvId,
          startsAt: wallClock(info.event.start),
          agentId: Number(container.dataset.agentId),
          fromAgentId: info.event.extendedProps.agentId,
          force: false,
        }, function () {});
      },
    });
  });

  // The week/day switch changes the page at once (like tabs); its button is only for visitors without JavaScript.
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    form.querySelectorAll("[data-noscript]").forEach(function (button) { button.hidden = true; });
    form.addEventListener("change", function (event) {
      // The reloaded page puts the focus back on the choice just made.
      try { sessionStorage.setItem("lapins-agenda-choice", event.target.id); } catch (error) { /* ignored */ }
      form.submit();
    });
  });
  try {
    var choice = sessionStorage.getItem("lapins-agenda-choice");
    sessionStorage.removeItem("lapins-agenda-choice");
    if (choice && document.getElementById(choice)) document.getElementById(choice).focus();
  } catch (error) { /* nothing saved */ }
})();
