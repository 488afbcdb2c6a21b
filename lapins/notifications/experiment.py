"""A territory's built-in experiment (off by default): two wordings of the reminder's sentence, each family in arm A
(the territory's usual sentence) or B (the one under test), drawn at random once per experiment and kept for it.

A family is the responsible adult of the rdv's usagers (or the usager when alone): brothers and sisters are in one
arm. The draw is a hash of the territory, the experiment's start and the family's id: stable without being stored,
and drawn anew by a new experiment. lapins.stats.experiment counts the no-shows per arm.
"""
from __future__ import annotations

import hashlib

from lapins.models import Rdv, Territory

ARMS = ("A", "B")


def running(territory: Territory) -> bool:
    return territory.experiment_started_at is not None and territory.experiment_ended_at is None


def arm(territory: Territory, family_id: int) -> str:
    """« A » or « B » for this family in the territory's current (or last) experiment."""
    started = territory.experiment_started_at.isoformat() if territory.experiment_started_at else "-"
    digest = hashlib.sha256(f"{territory.id}:{started}:{family_id}".encode()).digest()
    return ARMS[digest[0] & 1]


def family_id(rdv: Rdv) -> int | None:
    """The id that stands for the rdv's family: the smallest responsible adult's (or usager's) id."""
    ids = [usager.responsible_id or usager.id for usager in rdv.usagers]
    return min(ids) if ids else None


def reminder_note(rdv: Rdv, territory: Territory) -> str | None:
    """The sentence of this rdv's reminder: wording B for the families of arm B while an experiment runs."""
    family = family_id(rdv)
    if running(territory) and family is not None and arm(territory, family) == "B":
        return territory.experiment_note_b
    return territory.sms_note("reminder")
