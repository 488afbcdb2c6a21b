"""The territory's A/B experiment in figures: per arm, the rdvs held or missed since it started, the no-shows, the
« taux de lapins » and its 95 % confidence interval (Wilson's score interval: right near 0 % and on small counts,
where the textbook p ± 1.96·√(p(1−p)/n) goes below zero)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from lapins.infra.extensions import db
from lapins.models import Rdv, RdvStatus, Territory, Usager
from lapins.models.rdvs import rdv_usagers
from lapins.notifications import experiment
from lapins.stats.figures import Scope

Z_95 = 1.959964


@dataclass(frozen=True)
class Arm:
    name: str  # "A" or "B"
    wording: str | None
    rdvs: int  # held or missed
    noshow: int

    @property
    def rate(self) -> float | None:
        return self.noshow / self.rdvs if self.rdvs else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.noshow, self.rdvs)


def wilson(successes: int, total: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None without observations."""
    if total == 0:
        return None
    share = successes / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def arms(scope: Scope, territory: Territory, now: datetime) -> list[Arm] | None:
    """The two arms' figures, or None when the territory never ran an experiment."""
    if territory.experiment_started_at is None:
        return None
    end = min(territory.experiment_ended_at or now, now)
    family = func.min(func.coalesce(Usager.responsible_id, Usager.id))
    rows = db.session.execute(
        select(Rdv.status, family)
        .join(rdv_usagers, rdv_usagers.c.rdv_id == Rdv.id)
        .join(Usager, Usager.id == rdv_usagers.c.usager_id)
        .where(Rdv.organisation_id.in_(scope.organisation_ids), Rdv.starts_at >= territory.experiment_started_at,
               Rdv.starts_at < end, Rdv.status.in_((RdvStatus.SEEN, RdvStatus.NOSHOW)))
        .group_by(Rdv.id, Rdv.status)).all()
    counts = {name: [0, 0] for name in experiment.ARMS}
    for status, family_id in rows:
        tally = counts[experiment.arm(territory, family_id)]
        tally[0] += 1
        tally[1] += status == RdvStatus.NOSHOW
    wordings = {"A": territory.sms_note("reminder"), "B": territory.experiment_note_b}
    return [Arm(name, wordings[name], *counts[name]) for name in experiment.ARMS]
