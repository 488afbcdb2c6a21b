"""The online search's SQL floor: a WSGI app that reads, for each search, only the rows its page needs, then answers
the search's median page; nothing else.

Search i is asked for as /floor/<i>: the sectors holding its address (lapins.sectors.serving.address_sectors, one
query) and, for each lieu the page shows, lapins.slots.availability.fetch_rows_for_floor over the days it shows (the
plages of the motif at the lieu, their agents' absences and rdvs then: one query each), run by SQLAlchemy on a pooled
connection as the application runs its own. Served by the same gunicorn to the same wrk as the search
(bench/public_search.py, `public.search.<scenario>.floor_*`): what the search costs above it is Flask's and Lapins'.
"""
import json
import os
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from lapins import create_app
from lapins.infra.extensions import db
from lapins.sectors.serving import address_sectors
from lapins.slots.availability import fetch_rows_for_floor

BODY = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()
HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(BODY)))]
SEARCHES = json.loads(Path(os.environ["BENCH_FLOOR_QUERIES"]).read_text())
TERRITORIES = {search["territory_id"]: SimpleNamespace(id=search["territory_id"], tz=ZoneInfo(search["timezone"]))
               for search in SEARCHES}
LIEUX = [[(SimpleNamespace(id=lieu["motif_id"]), lieu["lieu_id"], datetime.fromisoformat(lieu["start"]),
           datetime.fromisoformat(lieu["end"])) for lieu in search["lieux"]] for search in SEARCHES]
lapins = create_app()


def app(environ, start_response):
    index = environ["PATH_INFO"].removeprefix("/floor/")
    if index.isdigit():  # anything else is gunicorn's start being checked (bench.agenda_week.Gunicorn)
        search = SEARCHES[int(index)]
        territory = TERRITORIES[search["territory_id"]]
        with lapins.app_context():
            address_sectors(territory.id, search["commune"], search["street"] or None)
            for motif, lieu_id, start, end in LIEUX[int(index)]:
                fetch_rows_for_floor(territory=territory, motif=motif, start=start, end=end, lieu_id=lieu_id)
            db.session.commit()
    start_response("200 OK", HEADERS)
    return [BODY]
