"""A real Radicale CalDAV server on 127.0.0.1, for the calendar tests and the bench.

It keeps its collections in a temporary directory, checks a plain htpasswd file (user `agent`, password
`mot-de-passe-app`), and can be stopped and started again on the same port with the same data (a server that goes
away mid-sync). Without the `radicale` package the tests are skipped, and fail under CI=true (tests/services.py).
"""
from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests import services

USER, PASSWORD = "agent", "mot-de-passe-app"


class RadicaleServer:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="lapins-radicale-"))
        self.port = services.free_port()
        self.process: subprocess.Popen | None = None
        (self.directory / "users").write_text(f"{USER}:{PASSWORD}\n")
        (self.directory / "config").write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {self.directory / 'users'}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"
            "[rights]\n"
            "type = owner_only\n"
            "[storage]\n"
            f"filesystem_folder = {self.directory / 'collections'}\n"
            "[logging]\n"
            "level = warning\n"
            "mask_passwords = True\n")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calendar_url(self, name: str = "lapins") -> str:
        return f"{self.base_url}/{USER}/{name}/"

    def start(self) -> RadicaleServer:
        if importlib.util.find_spec("radicale") is None:
            raise services.ServiceUnavailable("the radicale package is not installed (requirements-dev.txt)")
        log = self.directory / "radicale.log"
        self.process = subprocess.Popen(
            services.dying_with_this_process([sys.executable, "-m", "radicale", "--config",
                                              str(self.directory / "config")]),
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        services.wait_for(self._answers, "Radicale", log=log)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        services.stop_process(self.process)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def make_calendar(self, name: str = "lapins") -> str:
        """A new calendar collection (MKCALENDAR), as the agent would create in their app; returns its URL."""
        import caldav

        client = caldav.DAVClient(url=self.base_url, username=USER, password=PASSWORD)
        client.principal().make_calendar(name=name, cal_id=name)
        return self.calendar_url(name)

    def events(self, name: str = "lapins") -> dict[str, bytes]:
        """Every event object in the calendar, by UID (read with caldav, as any client would)."""
        import caldav
        import icalendar

        client = caldav.DAVClient(url=self.base_url, username=USER, password=PASSWORD)
        found: dict[str, bytes] = {}
        for item in client.calendar(url=self.calendar_url(name)).events():
            data = item.data.encode() if isinstance(item.data, str) else item.data
            for component in icalendar.Calendar.from_ical(data).walk("VEVENT"):
                uid = str(component["UID"])
                assert uid not in found, f"two objects for {uid}"
                found[uid] = data
        return found
