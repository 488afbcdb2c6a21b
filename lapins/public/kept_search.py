"""The online search's pages kept per process (`/<département>/prendre-rendez-vous?motif=…&commune_code=…`): the same
search asked again answers with ONE query (the stamps below), not the dozen a search reads.

A search shows what the territory's configuration (motifs and their delays, lieux, plages, sectors and their zones,
agents switched off: lapins.models.agenda_stamps draws the territory's new stamp in the same transaction) and its
agents' bookings and absences (their own stamps) allow, at a moment. A kept page is kept on those stamps, read before
the page was computed: it is served while they are unchanged and until `kept_until`, the first moment the clock alone
would change what it shows:
- the scope's start (now + the motif's minimum delay, on the 5-minute grid) passing a time shown hides it;
- when a lieu shows fewer than FIRST_DAYS days or no next page, its window's end (the maximum delay) moving may bring a
  day or the « Voir plus de dates » link: then kept to the next minute only;
- the territory's next midnight (the lieux listed without times carry today's date, and plages end on a day);
- an hour at most, so that the tokens it carries (signed for 24 h) stay young.
Only pages that are the same for every visitor are kept: no signed-in agent (the header), no flashed message, no
street looked up by the geocoder (a service of its own). The page has no CSRF token (its form is a GET); its slot and
dates tokens are reused for the page's life.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ARRAY, Integer, bindparam, func, literal_column, select

from lapins.infra.database import DriverQuery
from lapins.infra.extensions import db
from lapins.models import Agent, Territory
from lapins.slots.engine import ONE_DAY, SLOT_GRID, ceil_to_grid, local_midnight
from lapins.slots.picker import FIRST_DAYS

KEPT_SEARCHES = 1024  # then emptied: a page is 10 to 35 kB (35 MB at most per process); hot searches come back soon
STAMP = timedelta(minutes=1)
# The page's tokens are signed when it is computed and checked for 24 h (online.SLOT_TOKEN_AGE): an hour at most
# keeps a family that opens a time from a page served late in its life well within that.
LONGEST = timedelta(hours=1)

_kept: dict[tuple, Kept] = {}


@dataclass(frozen=True)
class Kept:
    stamps: tuple[tuple[int, int, str], ...]  # (0, territory id, stamp), then (1, agent id, stamp) by agent id
    until: datetime  # served while now < until
    body: str


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


def answer(key: tuple, now: datetime) -> str | None:
    """The kept page, when its stamps are still those of the database and the clock has not reached its end."""
    kept = _kept.get(key)
    if kept is None:
        return None
    if now >= kept.until:
        _kept.pop(key, None)
        return None
    territory_id = kept.stamps[0][1]
    agent_ids = tuple(row_id for kind, row_id, _ in kept.stamps if kind == 1)
    if stamps_of(territory_id, agent_ids) != kept.stamps:
        _kept.pop(key, None)
        return None
    return kept.body


def keep(key: tuple, territory_id: int, territory_stamp: str, agent_stamps, until: datetime, body: str) -> None:
    """Keeps the page computed from what these stamps (read before it) allowed."""
    if len(_kept) >= KEPT_SEARCHES:
        _kept.clear()
    _kept[key] = Kept(((0, territory_id, territory_stamp), *sorted((1, agent_id, stamp)
                                                                   for agent_id, stamp in set(agent_stamps))),
                      until, body)


def forget_all() -> None:
    _kept.clear()


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
            until = min(until, now.replace(second=0, microsecond=0) + STAMP)
    return until
