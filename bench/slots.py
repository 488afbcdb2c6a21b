"""First available slots: lapins.slots.availability.first_available timed, and against a one-query floor."""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy import select

from bench.measure import elapsed_ms, now_ns, percentile, summary
from lapins.infra.extensions import db
from lapins.models import Motif, Organisation, PlageOuverture, Territory, utcnow
from lapins.models.plages import plage_motifs

LIMIT, WEEKS = 10, 13


@dataclass
class SlotRuns:
    search_ms: list[float] = field(default_factory=list)
    floor_ms: list[float] = field(default_factory=list)
    floor_ratios: list[float] = field(default_factory=list)
    slots_found: list[int] = field(default_factory=list)
    motifs: int = 0

    def figures(self) -> dict:
        figures = {"search": summary(self.search_ms), "motifs": self.motifs,
                   "runs_with_fewer_slots": sum(1 for count in self.slots_found if count < LIMIT)}
        if self.floor_ms:
            figures["floor"] = summary(self.floor_ms)
            figures["floor_ratio"] = round(statistics.median(self.floor_ratios), 2)
            figures["floor_ratio_p95"] = round(percentile(self.search_ms, 0.95) / percentile(self.floor_ms, 0.95), 2)
        return figures


@dataclass
class SearchTarget:
    """A database to search in: its app, and its territory and motifs loaded once (detached, attributes kept)."""

    app: Flask
    territory: Territory
    motifs: list[Motif]
    examined: dict[int, object] = field(default_factory=dict)  # motif id -> end of the window its search read
    runs: SlotRuns = field(default_factory=SlotRuns)


def offered_motifs(territory_id: int) -> list[Motif]:
    """Motifs of the territory that at least one plage offers (the others have no slot to find)."""
    offered = (select(plage_motifs.c.motif_id).join(PlageOuverture, PlageOuverture.id == plage_motifs.c.plage_id)
               .join(Organisation, Organisation.id == PlageOuverture.organisation_id)
               .where(Organisation.territory_id == territory_id))
    return list(db.session.scalars(select(Motif).where(Motif.id.in_(offered)).order_by(Motif.id)))


def load_target(app: Flask, territory_id: int) -> SearchTarget:
    with app.app_context():
        territory = db.session.get(Territory, territory_id)
        motifs = offered_motifs(territory_id)
        for motif in motifs:  # load every attribute a search reads, so that none is fetched inside a timed call
            _ = motif.duration_minutes, motif.organisation_id
        _ = territory.timezone, territory.number
        db.session.expunge_all()
    random.Random(7).shuffle(motifs)  # same order in every database seeded alike
    return SearchTarget(app, territory, motifs, runs=SlotRuns(motifs=len(motifs)))


def time_searches(targets: list[SearchTarget], runs: int, warmup: int, with_floor: bool, log) -> list[SlotRuns]:
    """`runs` searches per target over its motifs in a fixed order, after `warmup` untimed ones.

    With several targets the runs are interleaved (alternating which goes first), so that a change of load on the
    machine weighs on every target alike. With_floor, each run also times fetch_rows_for_floor over the window the
    search read, alternating which of the two goes first so that neither always gets the warmer cache.
    """
    from lapins.slots.availability import examined_end, fetch_rows_for_floor, first_available

    start = utcnow()

    def search(target: SearchTarget, motif: Motif):
        began = now_ns()
        slots = first_available(territory=target.territory, motif=motif, limit=LIMIT, weeks=WEEKS, start=start)
        took = elapsed_ms(began)
        target.examined[motif.id] = examined_end(slots, territory=target.territory, start=start, weeks=WEEKS,
                                                 limit=LIMIT)
        return slots, took

    def floor(target: SearchTarget, motif: Motif) -> float:
        began = now_ns()
        fetch_rows_for_floor(territory=target.territory, motif=motif, start=start, end=target.examined[motif.id])
        return elapsed_ms(began)

    for index in range(warmup + runs):
        for target in targets if index % 2 == 0 else reversed(targets):
            motif = target.motifs[index % len(target.motifs)]
            with target.app.app_context():
                floor_first = with_floor and index % 2 == 1 and motif.id in target.examined
                floor_ms = floor(target, motif) if floor_first else None
                slots, search_ms = search(target, motif)
                if with_floor and not floor_first:
                    floor_ms = floor(target, motif)
            if index < warmup:
                continue
            target.runs.search_ms.append(search_ms)
            target.runs.slots_found.append(len(slots))
            if with_floor:
                target.runs.floor_ms.append(floor_ms)
                target.runs.floor_ratios.append(search_ms / floor_ms)
        if index >= warmup and (index - warmup + 1) % 100 == 0:
            log(f"{index - warmup + 1} / {runs} recherches")
    return [target.runs for target in targets]
