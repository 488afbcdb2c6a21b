"""Talking to an agent's CalDAV calendar with the `caldav` library; every failure becomes a CalendarError whose
message, in French, is what the agent reads on their settings page (never a family's data: ids and URLs only).

An agent's URL is a request made by Lapins' servers (SSRF): one that leads to loopback, a private network, a
link-local address (the cloud's metadata service) or any other non-public address is refused, unless its host is
listed in CALDAV_ALLOWED_PRIVATE_HOSTS (a département's intranet CalDAV). The settings form resolves the name and
refuses it; every connection checks again the address it actually reached, before a byte is sent (the name's DNS
may have changed since, or answer differently each time).
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlsplit

import caldav
import requests
from caldav.lib import error as dav_error
from flask import current_app, has_app_context
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

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


class PrivateDestination(Exception):
    """A connection reached an address that is not public and not allowed: nothing was sent."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(host, address)
        self.message = (f"Cette adresse mène à un serveur du réseau interne ({address}) : elle est refusée. S'il "
                        "s'agit de l'agenda de votre département, demandez à l'administrateur de Lapins de "
                        "l'autoriser.")


@dataclass(frozen=True)
class Destinations:
    """The non-public hosts an agent's calendar may be at: names and addresses or networks (CIDR), from
    CALDAV_ALLOWED_PRIVATE_HOSTS (« caldav.intranet.cg59.fr, 10.20.0.0/16, 127.0.0.1 »)."""

    names: frozenset[str] = frozenset()
    networks: tuple = ()

    @classmethod
    def parse(cls, text: str | None) -> Destinations:
        names, networks = set(), []
        for item in (part.strip().lower().strip("[]") for part in (text or "").split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                names.add(item.rstrip("."))
        return cls(frozenset(names), tuple(networks))

    @classmethod
    def configured(cls) -> Destinations:
        return cls.parse(current_app.config.get("CALDAV_ALLOWED_PRIVATE_HOSTS", "") if has_app_context() else "")

    def refuses(self, host: str, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_global and not ip.is_multicast:
            return False
        if (host or "").lower().rstrip(".") in self.names:
            return False
        return not any(ip.version == network.version and ip in network for network in self.networks)

    def check_url(self, url: str) -> None:
        """Raises CalendarError when the URL's host resolves to an address refused (or does not resolve)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, ValueError):
            raise CalendarError("Ce nom de serveur est introuvable : vérifiez l'adresse de l'agenda.") from None
        for *_, sockaddr in found:
            if self.refuses(host, sockaddr[0]):
                raise CalendarError(PrivateDestination(host, sockaddr[0]).message)


def _guarded_session(session: requests.Session, destinations: Destinations) -> None:
    """Mounts on `session` connections that check the address they reached before anything is sent."""

    class Guarded:
        def _new_conn(self):
            sock = super()._new_conn()
            address = sock.getpeername()[0]
            if destinations.refuses(self.host, address):
                sock.close()
                raise PrivateDestination(self.host, address)
            return sock

    class Connection(Guarded, HTTPConnection):
        pass

    class SecureConnection(Guarded, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = SecureConnection

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SecurePool}

    session.mount("http://", Adapter())
    session.mount("https://", Adapter())


class Calendar:
    def __init__(self, url: str, username: str, password: str, *, destinations: Destinations | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.destinations = destinations if destinations is not None else Destinations.configured()
        self.client = caldav.DAVClient(url=self.url, username=username, password=password, timeout=TIMEOUT_SECONDS)
        _guarded_session(self.client.session, self.destinations)
        self.calendar = self.client.calendar(url=self.url)
        self._name_checked = False

    def _check_name(self) -> None:
        """Once per run: the name is resolved again (behind an outgoing proxy, the connections' own check sees only
        the proxy's address)."""
        if not self._name_checked:
            self.destinations.check_url(self.url)
            self._name_checked = True

    def check(self) -> None:
        """Raises CalendarError unless the URL is a public (or allowed) calendar these credentials may read."""
        self._check_name()
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
        self._check_name()
        try:
            found = self.calendar.objects_by_sync_token(sync_token=token, load_objects=False)
        except (dav_error.ReportError, dav_error.DAVError, ValueError):
            return None
        except (requests.RequestException, OSError, PrivateDestination) as error:
            raise self._translate(error) from None
        new_token = str(found.sync_token) if found.sync_token else None
        return Changes(changed=bool(list(found)) or new_token != token, token=new_token)

    def events_between(self, start: datetime, end: datetime) -> list[bytes]:
        """The calendar objects with an event overlapping [start, end) (a time-range REPORT); recurring ones come
        whole, to be expanded by the caller (servers differ in what they expand)."""
        found = self._call(self.calendar.date_search, start=start, end=end, expand=False)
        return [item.data.encode() if isinstance(item.data, str) else item.data for item in found]

    def _call(self, function, *args, **kwargs):
        self._check_name()
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
        if isinstance(error, PrivateDestination):
            return CalendarError(error.message)
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
