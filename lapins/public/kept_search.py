"""The online search's pages kept per process (`/<département>/prendre-rendez-vous?motif=…&commune_code=…`): the same
search asked again answers with ONE query (the stamps below), not the dozen a search reads.

A search shows what the territory's configuration (motifs and their delays, lieux, plages, sectors and their zones,
agents switched off: lapins.models.agenda_stamps draws the territory's new stamp in the same transaction) and its
agents' bookings and absences (their own stamps) allow, at a moment. A kept page is kept on those stamps, read before
the page was computed: it is served while they are unchanged and until `kept_until`, the first moment the clock alone
would change what it shows:
- the scope's start (now + the motif's minimum delay, on the 5-minute grid) passing a time shown hides it;
- when a lieu shows fewer than FIRST_DAYS days or no next page, its window's end (now + the maximum delay, on the
  5-minute grid) moving may bring a day or the « Voir plus de dates » link: then kept until it moves;
- the territory's next midnight (the lieux listed without times carry today's date, and plages end on a day);
- an hour at most, so that the tokens it carries (signed for 24 h) stay young.
Only pages that are the same for every visitor are kept: no signed-in agent (the header), no flashed message, no
street looked up by the geocoder (a service of its own). The page has no CSRF token (its form is a GET); its slot and
dates tokens are reused for the page's life.

Refreshed ahead of the clock: a kept page served within its share of AHEAD before its `until` (a quarter to all of
it, drawn from its key; or in the last half of a shorter life) has its next version computed as a search at exactly
`until` would (now = until, the stamps read first), kept aside and served from `until` on while its stamps hold; so
a page expiring by the clock costs no family a whole search.
Where that is computed is ONLINE_SEARCH_REFRESH: `after` (in the request's own thread once its response is sent; the
default, measured better than a thread sharing the GIL with the requests), `thread` (a daemon thread per process with
its own app context and database session), `inline` (before answering: the tests' in-memory SQLite has one connection
for every thread). At most KEPT_SEARCHES pages, the least recently served dropped first.

Rebuilt from its configuration: each page is kept with what only the territory's configuration and the request
decide (the lieux serving the address for the need, the motifs, the open needs: online_views.Configured, plain
values). A page ended only by its agents' stamps (a booking) or the clock, the territory's stamp unchanged, hands it
back (`answer`), and the view rebuilds the page from it and the picker's days, read again for the lieux of the
changed agents only, on the same local day; a new territory stamp drops it with the page.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

from flask import after_this_request, current_app
from sqlalchemy import ARRAY, Integer, bindparam, func, literal_column, select

from lapins.infra.database import DriverQuery
from lapins.infra.extensions import db
from lapins.models import Agent, Territory
from lapins.slots.engine import ONE_DAY, SLOT_GRID, ceil_to_grid, local_midnight
from lapins.slots.picker import FIRST_DAYS

KEPT_SEARCHES = 1024  # a page is 10 to 35 kB (35 MB at most per process); the least recently served dropped first
# The page's tokens are signed when it is computed and checked for 24 h (online.SLOT_TOKEN_AGE): an hour at most
# keeps a family that opens a time from a page served late in its life well within that.
LONGEST = timedelta(hours=1)
# A page served this close to its end (or in the last half of a shorter life) has its next version computed. Each
# page takes its own share of it (refresh_due): the window's end moving on its 5-minute grid ends many pages at one
# instant, and their next versions computed together stalled both workers (p95 36 -> 185 ms in that window).
# A minute: at 15 searches a second for 50 pages, a page reaches each worker every few seconds, well within it.
AHEAD = timedelta(seconds=60)

log = logging.getLogger(__name__)

_kept: OrderedDict[tuple, Kept] = OrderedDict()  # least recently served first
_ahead: dict[tuple, Kept] = {}  # the next version of a kept page, computed for the moment it ends
_refreshing: set[tuple] = set()  # the pages whose next version is being computed


@dataclass(frozen=True)
class Kept:
    stamps: tuple[tuple[int, int, str], ...]  # (0, territory id, stamp), then (1, agent id, stamp) by agent id
    until: datetime  # served while now < until
    body: str
    since: datetime | None = None  # the moment it was computed for (its search's `now`)
    # What it was computed from that only the territory's configuration decides (online_views.Configured): the
    # page ended by agents' stamps or the clock is rebuilt from it while the territory's stamp holds.
    configuration: Any = None


def _stamps_statement(agents):
    return select(literal_column("0").label("kind"), Territory.id, Territory.agenda_stamp).where(
        Territory.id == bindparam("territory_id")).union_all(
        select(literal_column("1"), Agent.id, Agent.agenda_stamp).where(agents))


# On PostgreSQL, one statement compiled once and run by the driver in autocommit (no BEGIN, no ROLLBACK).
_STAMPS_PG = DriverQuery(_stamps_statement(Agent.id == func.any(bindparam("agent_ids", type_=ARRAY(Integer)))))


def key_of(departement: str, args) -> tuple:
    """What the page depends on in the request: the département and every argument, as given."""
    return departement.upper()[:3], tuple(sorted(args.items(multi=True)))


def stamps_of(territory_id: int, agent_ids: tuple[int, ...]) -> tuple[tuple[int, int, str], ...]:
    """The territory's stamp and the agents', as the kept page's are written."""
    if db.engine.dialect.name == "postgresql":
        rows = _STAMPS_PG.rows(territory_id=territory_id, agent_ids=list(agent_ids))
    else:
        rows = db.session.execute(_stamps_statement(Agent.id.in_(agent_ids)), {"territory_id": territory_id}).all()
    return tuple(sorted((int(kind), int(row_id), stamp) for kind, row_id, stamp in rows))


def answer(key: tuple, now: datetime) -> tuple[str | None, Any]:
    """The kept page, when its stamps are still those of the database and the clock has not reached its end (from
    its end on, its next version if computed ahead); else, when the territory's stamp still holds (only agents'
    stamps or the clock ended it), the configuration it was computed from, to rebuild it; else (None, None)."""
    kept = _kept.get(key)
    if kept is None:
        return None, None
    ended = False
    if now >= kept.until:
        ahead = _ahead.pop(key, None)
        if ahead is None or not ahead.since <= now < ahead.until:
            ended = True
        else:
            kept = _kept[key] = ahead
    territory_id = kept.stamps[0][1]
    agent_ids = tuple(row_id for kind, row_id, _ in kept.stamps if kind == 1)
    stamps = stamps_of(territory_id, agent_ids)
    if ended or stamps != kept.stamps:
        _kept.pop(key, None)
        _ahead.pop(key, None)
        return None, (kept.configuration if stamps[:1] == kept.stamps[:1] else None)
    _kept.move_to_end(key)
    return kept.body, None


def _kept_of(territory_id: int, territory_stamp: str, agent_stamps, until: datetime, body: str,
             since: datetime | None, configuration: Any) -> Kept:
    return Kept(((0, territory_id, territory_stamp), *sorted((1, agent_id, stamp)
                                                             for agent_id, stamp in set(agent_stamps))),
                until, body, since, configuration)


def keep(key: tuple, territory_id: int, territory_stamp: str, agent_stamps, until: datetime, body: str,
         since: datetime | None = None, configuration: Any = None) -> None:
    """Keeps the page computed (for `since`) from what these stamps (read before it) allowed, and the configuration
    it was computed from (read with the territory's stamp `territory_stamp`)."""
    _ahead.pop(key, None)
    _refreshing.discard(key)  # a refresh whose response was never closed must not block the next ones
    _kept[key] = _kept_of(territory_id, territory_stamp, agent_stamps, until, body, since, configuration)
    _kept.move_to_end(key)
    while len(_kept) > KEPT_SEARCHES:
        dropped, _ = _kept.popitem(last=False)
        _ahead.pop(dropped, None)


def refresh_due(key: tuple, now: datetime) -> datetime | None:
    """The moment to compute the next version of the kept page for, when it is near its end and none is computed
    or being computed; else None."""
    kept = _kept.get(key)
    if kept is None or kept.since is None or key in _ahead or key in _refreshing:
        return None
    share = 0.25 + 0.75 * zlib.crc32(repr(key).encode()) / 0xFFFFFFFF
    margin = min(AHEAD * share, (kept.until - kept.since) / 2)
    return kept.until if now >= kept.until - margin else None


def keep_ahead(key: tuple, territory_id: int, territory_stamp: str, agent_stamps, until: datetime, body: str,
               since: datetime, configuration: Any = None) -> None:
    """Keeps the next version of a kept page, computed for `since`: the moment the page kept now ends."""
    kept = _kept.get(key)
    if kept is not None and kept.until == since and since < until:
        _ahead[key] = _kept_of(territory_id, territory_stamp, agent_stamps, until, body, since, configuration)


def refresh(key: tuple, job: Callable[[], None]) -> None:
    """Runs `job` (which computes the next version and calls keep_ahead) as ONLINE_SEARCH_REFRESH says, once at a
    time per page."""
    if key in _refreshing:
        return
    _refreshing.add(key)

    def run() -> None:
        try:
            job()
        except Exception:  # a failed refresh only means the page is computed by the request that finds it ended
            log.exception("online search: the next version of a kept page could not be computed")
        finally:
            _refreshing.discard(key)

    how = current_app.config.get("ONLINE_SEARCH_REFRESH", "after")
    if how == "inline":
        run()
    elif how == "after":
        @after_this_request
        def _after(response):
            response.call_on_close(run)
            return response
    else:
        _refresher().put(run)


_thread_queue: tuple[int, queue.SimpleQueue] | None = None


def _refresher() -> queue.SimpleQueue:
    """The process's refresh queue and its daemon thread, started at first use in each process (gunicorn forks its
    workers after loading the app)."""
    global _thread_queue
    if _thread_queue is None or _thread_queue[0] != os.getpid():
        jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_work, args=(jobs,), name="kept-search-refresh", daemon=True).start()
        _thread_queue = (os.getpid(), jobs)
    return _thread_queue[1]


def _work(jobs: queue.SimpleQueue) -> None:
    while True:
        jobs.get()()


def wait_refreshed(timeout: float = 30.0) -> None:
    """Until no next version is being computed (tests)."""
    deadline = time.monotonic() + timeout  # the tests' frozen clock does not stop this one
    while _refreshing and time.monotonic() < deadline:
        time.sleep(0.01)


def forget_all() -> None:
    _kept.clear()
    _ahead.clear()
    _refreshing.clear()


def kept_until(found, now: datetime, tz: ZoneInfo) -> datetime:
    """The first moment the clock alone changes what `found` (lapins.public.online.LieuOffer) shows (see above)."""
    until = min(local_midnight(now.astimezone(tz).date() + ONE_DAY, tz), now + LONGEST)
    for offer in found:
        if offer.days is None:  # listed without its times: only today's date in its link
            continue
        min_delay = timedelta(hours=offer.motif.online_min_hours)
        for day in offer.days:
            for choice in day.choices:
                # Shown while ceil_to_grid(now + min_delay) <= starts_at, i.e. while now + min_delay is at most the
                # grid point at or before starts_at.
                grid = ceil_to_grid(choice.starts_at)
                if grid != choice.starts_at:
                    grid -= SLOT_GRID
                until = min(until, grid - min_delay + timedelta(microseconds=1))
        if len(offer.days) < FIRST_DAYS or offer.following is None:
            # The window's end (ceil_to_grid(now + max_delay)) moves once now + max_delay passes its grid point.
            max_delay = timedelta(days=offer.motif.online_max_days)
            until = min(until, ceil_to_grid(now + max_delay) - max_delay + timedelta(microseconds=1))
    return until
