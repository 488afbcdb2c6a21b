"""A territory's motif catalogue (issue 23.6): what its pages change, each refusal an AdminError in French raised
before anything is stored.

An entry's field reaches the motifs adopted from it unless the entry lets organisations adjust that field and the
motif did (its value differs from the entry's before the change): the adjustment is kept, the rest follows. A field
that stops being adjustable takes the entry's value on every motif. The plan of a change is shown before it is saved
(`plan_entry_change`), and saved only if nothing moved in between (`fingerprint`).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from lapins.admin.services import AdminError
from lapins.infra.extensions import db
from lapins.models import LocationType, Motif, MotifCatalogueEntry, Organisation, Territory
from lapins.models.motifs import CATALOGUE_FIELDS

logger = logging.getLogger(__name__)
MOTIF_NAME_TAKEN = "Un motif porte déjà ce nom dans cette organisation : reliez-le au catalogue depuis sa page."


def normalised(values: dict) -> dict:
    """The catalogue's fields as stored: a location type, a lower-case colour, no empty reminders."""
    values = {name: values[name] for name in CATALOGUE_FIELDS}
    values["location_type"] = LocationType(values["location_type"])
    values["color"] = values["color"].lower()
    values["reminder_offsets"] = values["reminder_offsets"] or None
    return values


def shown(name: str, value) -> str:
    """A field's value as the pages write it."""
    if isinstance(value, bool):
        return "Oui" if value else "Non"
    if isinstance(value, LocationType):
        return value.label
    if name == "reminder_offsets":
        return f"{value} h avant" if value else "ceux du territoire"
    return "—" if value is None else str(value)


def posted(value) -> str | None:
    """A field's value as its form posts it (None: a checkbox left unticked, so not posted)."""
    if isinstance(value, bool):
        return "y" if value else None
    if isinstance(value, LocationType):
        return value.value
    return "" if value is None else str(value)


def _commit(refusal: str, field: str | None = None) -> None:
    """Commit, or AdminError when a unique index refuses (the same change made twice at once, the other one won)."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AdminError(refusal, field) from None


# --- Reading -------------------------------------------------------------------------------------------------

def entries(territory: Territory) -> list[MotifCatalogueEntry]:
    return list(db.session.scalars(
        select(MotifCatalogueEntry).where(MotifCatalogueEntry.territory_id == territory.id)
        .options(selectinload(MotifCatalogueEntry.motifs).selectinload(Motif.organisation))
        .order_by(MotifCatalogueEntry.name)))


def adopted_by(organisation: Organisation) -> dict[int, Motif]:
    """The organisation's motifs linked to an entry, by entry id."""
    return {motif.catalogue_id: motif for motif in db.session.scalars(
        select(Motif).where(Motif.organisation_id == organisation.id, Motif.catalogue_id.is_not(None)))}


def _entry_name_taken(territory_id: int, name: str, but: int | None) -> bool:
    query = select(MotifCatalogueEntry.id).where(MotifCatalogueEntry.territory_id == territory_id,
                                                 func.lower(MotifCatalogueEntry.name) == name.lower())
    if but is not None:
        query = query.where(MotifCatalogueEntry.id != but)
    return db.session.scalar(query.limit(1)) is not None


def _motif_name_taken(organisation_id: int, name: str, but: int | None) -> bool:
    query = select(Motif.id).where(Motif.organisation_id == organisation_id, func.lower(Motif.name) == name.lower())
    if but is not None:
        query = query.where(Motif.id != but)
    return db.session.scalar(query.limit(1)) is not None


# --- Changing an entry ----------------------------------------------------------------------------------------

@dataclass
class MotifPlan:
    """What a change to an entry does to one adopted motif: fields changed (label, old, new) and fields kept because
    the organisation adjusted them (label, its value)."""

    motif: Motif
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, label, old, new
    kept: list[tuple[str, str, str]] = field(default_factory=list)  # name, label, the motif's value


def plan_entry_change(entry: MotifCatalogueEntry, values: dict, adjustable: set[str]) -> list[MotifPlan]:
    """What saving `values` and `adjustable` onto the entry would change on each of its motifs (nothing stored)."""
    values = normalised(values)
    plans = []
    for motif in sorted(entry.motifs, key=lambda m: (m.organisation.name, m.id)):
        plan = MotifPlan(motif)
        for name, label in CATALOGUE_FIELDS.items():
            mine, before, after = getattr(motif, name), getattr(entry, name), values[name]
            adjusted = name in adjustable and mine != before
            if adjusted:
                if before != after:
                    plan.kept.append((name, label, shown(name, mine)))
            elif mine != after:
                plan.changes.append((name, label, shown(name, mine), shown(name, after)))
        if plan.changes or plan.kept:
            plans.append(plan)
    return plans


def fingerprint(entry: MotifCatalogueEntry | None, values: dict, adjustable: set[str]) -> str:
    """A short digest of a change as previewed: confirming it saves it only if the entry and its motifs still are as
    they were shown (another administrator's change in between shows the preview again)."""
    plans = plan_entry_change(entry, values, adjustable) if entry is not None and entry.id else []
    text = repr((sorted((k, str(v)) for k, v in normalised(values).items()), sorted(adjustable),
                 [(plan.motif.id, plan.changes, plan.kept) for plan in plans]))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def save_entry(entry: MotifCatalogueEntry, values: dict, adjustable: set[str]) -> list[MotifPlan]:
    """The entry stored and its change carried to its motifs, in one transaction; the plans applied are returned."""
    values = normalised(values)
    if _entry_name_taken(entry.territory_id, values["name"], entry.id):
        raise AdminError("Un motif du catalogue porte déjà ce nom dans ce territoire.", "name")
    unknown = adjustable - set(CATALOGUE_FIELDS)
    if unknown:
        raise AdminError("Choisissez les champs ajustables parmi ceux du catalogue.")
    plans = plan_entry_change(entry, values, adjustable) if entry.id else []
    for plan in plans:
        renamed = next((new for name, _, _, new in plan.changes if name == "name"), None)
        if renamed and _motif_name_taken(plan.motif.organisation_id, values["name"], plan.motif.id):
            raise AdminError(f"L'organisation « {plan.motif.organisation.name} » a déjà un autre motif nommé "
                             f"« {values['name']} » : renommez-le d'abord, rien n'a été enregistré.", "name")
    for plan in plans:
        for name, *_ in plan.changes:
            setattr(plan.motif, name, values[name])
    for name, value in values.items():
        setattr(entry, name, value)
    entry.adjustable = sorted(adjustable)
    db.session.add(entry)
    _commit("Un motif du catalogue porte déjà ce nom dans ce territoire.", "name")
    logger.info("Catalogue entry %s saved, %s adopted motifs changed", entry.id, sum(bool(p.changes) for p in plans))
    return plans


# --- Adopting, adjusting, linking -----------------------------------------------------------------------------

def adopt(organisation: Organisation, entry: MotifCatalogueEntry) -> Motif:
    """The organisation's own motif made from the entry, linked to it."""
    already = adopted_by(organisation).get(entry.id)
    if already is not None:
        raise AdminError(f"Cette organisation a déjà adopté ce motif : « {already.name} ».")
    if _motif_name_taken(organisation.id, entry.name, None):
        raise AdminError(MOTIF_NAME_TAKEN)
    motif = Motif(organisation_id=organisation.id, catalogue_entry=entry, **entry.values())
    db.session.add(motif)
    _commit("Cette organisation a déjà adopté ce motif.")
    logger.info("Catalogue entry %s adopted by organisation %s (motif %s)", entry.id, organisation.id, motif.id)
    return motif


def forbidden_adjustment(motif: Motif, values: dict) -> None:
    """Refuses a linked motif's form whose values differ from its entry's on a field the entry does not let
    organisations adjust (the page shows those fields fixed: only a hand-made request sends another value)."""
    entry = motif.catalogue_entry
    if entry is None:
        return
    values = normalised(values)
    for name, label in CATALOGUE_FIELDS.items():
        if not entry.is_adjustable(name) and values[name] != getattr(entry, name):
            raise AdminError(f"« {label} » est fixé par le catalogue du territoire : seul son administrateur peut le "
                             "changer. Rien n'a été enregistré.", name)


def compare(motif: Motif, entry: MotifCatalogueEntry) -> list[tuple[str, str, str, str]]:
    """Field by field, the motif's value, the entry's, and what linking does: (label, mine, theirs, outcome)."""
    rows = []
    for name, label in CATALOGUE_FIELDS.items():
        mine, theirs = getattr(motif, name), getattr(entry, name)
        if mine == theirs:
            outcome = "Identique"
        elif entry.is_adjustable(name):
            outcome = "Gardé : ajustable par l'organisation"
        else:
            outcome = "Prend la valeur du catalogue"
        rows.append((label, shown(name, mine), shown(name, theirs), outcome))
    return rows


def link(motif: Motif, entry: MotifCatalogueEntry | None) -> Motif:
    """An existing motif linked to an entry of its territory's catalogue: the fields the entry fixes take its values,
    the adjustable ones stay the motif's."""
    if entry is None or entry.territory_id != motif.organisation.territory_id:
        raise AdminError("Choisissez un motif du catalogue de votre territoire : ce motif ne peut être relié qu'à "
                         "lui. Rien n'a été relié.", "entry")
    if motif.catalogue_id is not None:
        raise AdminError("Ce motif est déjà relié au catalogue : détachez-le d'abord.", "entry")
    other = adopted_by(motif.organisation).get(entry.id)
    if other is not None:
        raise AdminError(f"Le motif « {other.name} » de cette organisation est déjà relié à cette entrée.", "entry")
    if not entry.is_adjustable("name") and entry.name.lower() != motif.name.lower() \
            and _motif_name_taken(motif.organisation_id, entry.name, motif.id):
        raise AdminError(f"Un autre motif de cette organisation s'appelle déjà « {entry.name} ».", "entry")
    for name in CATALOGUE_FIELDS:
        if not entry.is_adjustable(name):
            setattr(motif, name, getattr(entry, name))
    motif.catalogue_entry = entry
    _commit("Un autre motif de cette organisation est déjà relié à cette entrée.", "entry")
    logger.info("Motif %s linked to catalogue entry %s", motif.id, entry.id)
    return motif


def unlink(motif: Motif) -> None:
    """The motif keeps its values and becomes the organisation's alone: the entry's changes no longer reach it."""
    motif.catalogue_entry = None
    db.session.commit()
    logger.info("Motif %s unlinked from the catalogue", motif.id)
