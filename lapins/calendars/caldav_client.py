"""Talking to an agent's CalDAV calendar with the `caldav` library; every failure becomes a CalendarError whose
message, in French, is what the agent reads on their settings page (never a family's data: ids and URLs only)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import caldav
import requests
from caldav.lib import error as dav_error

TIMEOUT_SECONDS = 10


class CalendarError(Exception):
    """What went wrong, in French, for the agent."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Changes:
    """What a sync-token REPORT (RFC 6578) said: whether anything changed since `token`, and the new token; None
    when the server does not support it (busy times are then read by time range at every run)."""

    changed: bool
    token: str | None


class Calendar:
    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.client = caldav.DAVClient(url=self.url, username=username, password=password, timeout=TIMEOUT_SECONDS)
        self.calendar = self.client.calendar(url=self.url)

    def check(self) -> None:
        """Raises CalendarError unless the URL is a calendar these credentials may read."""
        components = self._call(self.calendar.get_supported_components)
        if not components or "VEVENT" not in components:
            raise CalendarError("Cette adresse n'est pas celle d'un agenda CalDAV acceptant des événements : "
                                "vérifiez l'URL de l'agenda.")

    def object_url(self, uid: str) -> str:
        return self.url + quote(uid, safe="") + ".ics"

    def put(self, uid: str, body: bytes) -> None:
        """Creates or replaces the event of this UID (a repeat writes the same object again)."""
        response = self._call(self.client.put, self.object_url(uid), body,
                              {"Content-Type": "text/calendar; charset=utf-8"})
        self._raise_for(response.status)

    def delete(self, uid: str) -> None:
        """Removes the event of this UID; already gone is fine."""
        try:
            response = self._call(self.client.delete, self.object_url(uid))
        except CalendarError as error:
            if getattr(error, "not_found", False):
                return
            raise
        if response.status != 404:
            self._raise_for(response.status)

    def changes_since(self, token: str | None) -> Changes | None:
        try:
            found = self.calendar.objects_by_sync_token(sync_token=token, load_objects=False)
        except (dav_error.ReportError, dav_error.DAVError, ValueError):
            return None
        except (requests.RequestException, OSError) as error:
            raise self._translate(error) from None
        new_token = str(found.sync_token) if found.sync_token else None
        return Changes(changed=bool(list(found)) or new_token != token, token=new_token)

    def events_between(self, start: datetime, end: datetime) -> list[bytes]:
        """The calendar objects with an event overlapping [start, end) (a time-range REPORT); recurring ones come
        whole, to be expanded by the caller (servers differ in what they expand)."""
        found = self._call(self.calendar.date_search, start=start, end=end, expand=False)
        return [item.data.encode() if isinstance(item.data, str) else item.data for item in found]

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:  # the library raises many kinds: each is told to the agent plainly
            raise self._translate(error) from None

    @staticmethod
    def _raise_for(status: int) -> None:
        if status in (200, 201, 204):
            return
        if status in (401, 403):
            raise CalendarError("Le serveur d'agenda refuse l'identifiant ou le mot de passe d'application.")
        if status == 404:
            raise CalendarError("L'agenda n'existe plus à cette adresse : reconnectez votre agenda.")
        if status >= 500:
            raise CalendarError(f"Le serveur d'agenda a répondu par une erreur (HTTP {status}) : nouvel essai "
                                "plus tard.")
        raise CalendarError(f"Le serveur d'agenda a refusé l'événement (HTTP {status}).")

    @staticmethod
    def _translate(error: Exception) -> CalendarError:
        if isinstance(error, CalendarError):
            return error
        if isinstance(error, requests.Timeout):
            return CalendarError("Le serveur d'agenda n'a pas répondu à temps : nouvel essai plus tard.")
        if isinstance(error, (requests.ConnectionError, OSError)):
            return CalendarError("Le serveur d'agenda est injoignable : vérifiez l'adresse, ou il est "
                                 "momentanément arrêté.")
        if isinstance(error, requests.RequestException):
            return CalendarError("Adresse d'agenda invalide : elle doit commencer par https://.")
        if isinstance(error, dav_error.AuthorizationError):
            return CalendarError("Le serveur d'agenda refuse l'identifiant ou le mot de passe d'application.")
        if isinstance(error, dav_error.NotFoundError):
            translated = CalendarError("Aucun agenda à cette adresse : vérifiez l'URL (l'agenda a peut-être été "
                                       "supprimé).")
            translated.not_found = True
            return translated
        status = getattr(error, "reason", "") or ""
        text = str(error)
        if "500" in text or "502" in text or "503" in text or "Internal Server Error" in text or "5" == status[:1]:
            return CalendarError("Le serveur d'agenda a répondu par une erreur (HTTP 5xx) : nouvel essai plus tard.")
        return CalendarError("La réponse du serveur n'est pas celle d'un agenda CalDAV : vérifiez l'URL de "
                             "l'agenda.")
