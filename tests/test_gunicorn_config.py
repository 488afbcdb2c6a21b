"""gunicorn as docs/deploy.md starts it: gunicorn.conf.py, read from the code's directory, shapes its access log."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests import services

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_gunicorns_access_log_keeps_no_query_string(tmp_path):
    """A usager search puts a name or a phone number in the query string: the access log the doc sets up writes the
    path only."""
    port = services.free_port()
    log = tmp_path / "access.log"
    env = {**os.environ, "LAPINS_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path / 'lapins.sqlite3'}"}
    server = subprocess.Popen(services.dying_with_this_process(
        [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--access-logfile", str(log),
         "lapins:create_app()"]), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/usagers?q=Durand+0612345678", timeout=15,
                             headers={"Referer": f"http://127.0.0.1:{port}/usagers?q=Kerbrat"})
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "/usagers" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=20)
    written = log.read_text()
    assert "GET /usagers HTTP/1.1" in written
    assert "Durand" not in written and "0612345678" not in written and "Kerbrat" not in written
