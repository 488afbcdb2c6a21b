"""The slot picker's SQL floor: a WSGI app that reads, in one query, every row a family's first picker page needs,
then answers the picker's median page; nothing else.

Client i asks for /floor/<i>: its query is lapins.slots.availability.fetch_rows_for_floor over the days its page
shows (the plages of its motif at its lieu for its agent, her absences and her rdvs then), run by SQLAlchemy on a
pooled connection as the application runs its own. Served by the same gunicorn to the same clients as the picker
(bench/public.py, `public.next_slots.floor_*`): what the picker costs above it is Flask's and Lapins'.
"""
import json
import os
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from lapins import create_app
from lapins.infra.extensions import db
from lapins.slots.availability import fetch_rows_for_floor

BODY = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()
HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(BODY)))]
QUERIES = [dict(query, territory=SimpleNamespace(id=query["territory_id"], tz=ZoneInfo(query["timezone"])),
                motif=SimpleNamespace(id=query["motif_id"]), start=datetime.fromisoformat(query["start"]),
                end=datetime.fromisoformat(query["end"]))
           for query in json.loads(Path(os.environ["BENCH_FLOOR_QUERIES"]).read_text())]
lapins = create_app()


def app(environ, start_response):
    client = environ["PATH_INFO"].removeprefix("/floor/")
    if client.isdigit():  # anything else is gunicorn's start being checked (bench.agenda_week.Gunicorn)
        query = QUERIES[int(client)]
        with lapins.app_context():
            fetch_rows_for_floor(territory=query["territory"], motif=query["motif"], start=query["start"],
                                 end=query["end"], lieu_id=query["lieu_id"], agent_id=query["agent_id"])
            db.session.commit()
    start_response("200 OK", HEADERS)
    return [BODY]
