"""Two files of one person: finding likely duplicates and merging them into one, in one transaction.

The finder reads the indexes of `usagers` (birth date and name key, phone, e-mail) and keeps what
`lapins.locale.matching.likely_same` says, the one place its rules are written. A merge chooses field by field
(`MERGE_FIELDS`: a new column of the usager is one line there), moves everything that points at the removed file to
the kept one (`FOLLOWERS`: every foreign key to `usagers`, checked by tests/test_usager_merge.py against the
metadata) and leaves the removed file as a tombstone without personal data that sends its links, its id in the API
and its history to the kept file. The audit listener writes « Fusion de dossiers » on the tombstone, the merge
writes it on the kept file; the webhooks' listener sends `usager.merged`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import aliased

from lapins import policies
from lapins.audit.actors import ambient_actor
from lapins.infra.extensions import db
from lapins.locale.formatting import local_datetime
from lapins.locale.matching import Identity, contact_key, likely_same
from lapins.models import Message, Participation, Rdv, RdvStatus, SlotOffer, Usager, WaitlistEntry, utcnow
from lapins.models.audit import AuditAction, AuditEvent, AuditObject
from lapins.models.rdvs import rdv_usagers

CANDIDATE_LIMIT = 20
PAIR_LIMIT = 100


class MergeRefused(Exception):
    """A merge that cannot be made, with the French sentence that says why."""


# --- Choosing field by field ----------------------------------------------------------------------------------------


def _text(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    return str(value)


@dataclass(frozen=True)
class MergeField:
    """A field an agent chooses between the two files; `companions` go with it (a number's consent and its
    delivery errors go with that number: a consent given for one number is not one for another)."""

    name: str
    label: str
    companions: tuple[str, ...] = ()
    show: Callable[[Usager], str] | None = None

    def shown(self, usager: Usager) -> str:
        return self.show(usager) if self.show is not None else _text(getattr(usager, self.name))

    def value(self, usager: Usager) -> tuple:
        return tuple(getattr(usager, name) for name in (self.name, *self.companions))

    def copy(self, source: Usager, target: Usager) -> None:
        for name in (self.name, *self.companions):
            setattr(target, name, getattr(source, name))


def _responsible(usager: Usager) -> str:
    return usager.responsible.full_name if usager.responsible is not None else "—"


def _second_responsible(usager: Usager) -> str:
    return usager.second_responsible.full_name if usager.second_responsible is not None else "—"


def _consent(flag: str) -> Callable[[Usager], str]:
    def show(usager: Usager) -> str:
        value = getattr(usager, flag.split(":")[0])
        if not value:
            return "—"
        return f"{_text(value)} ({'accepte' if getattr(usager, flag.split(':')[1]) else 'refuse'} les messages)"
    return show


def _own_address(usager: Usager) -> str:
    """The file's own address (not the responsible person's, which a child's page shows), street to access notes."""
    parts = (usager.address_street, " ".join(p for p in (usager.address_postcode, usager.address_commune) if p),
             usager.address_access)
    return ", ".join(part for part in parts if part) or "—"


MERGE_FIELDS: list[MergeField] = [
    MergeField("first_name", "Prénom"),
    MergeField("last_name", "Nom"),
    MergeField("birth_date", "Date de naissance"),
    MergeField("phone", "Téléphone", ("sms_consent", "phone_undeliverable_at", "phone_error"),
               _consent("phone:sms_consent")),
    MergeField("email", "Adresse électronique", ("email_consent",), _consent("email:email_consent")),
    MergeField("responsible_id", "Responsable", (), _responsible),
    MergeField("second_responsible_id", "Second responsable", (), _second_responsible),
    MergeField("address_street", "Adresse (visites à domicile)",
               ("address_postcode", "address_commune", "commune_insee", "address_access"), _own_address),
    MergeField("external_id", "Identifiant dans l'outil précédent"),
]
# What a tombstone keeps of its personal data: nothing (its `external_id` stays when the kept file has its own, so
# that an import of the other tool's file finds the kept file through it).
ERASED_ON_TOMBSTONE = {"first_name": "", "last_name": "", "birth_date": None, "phone": None, "email": None,
                       "sms_consent": False, "email_consent": False, "phone_undeliverable_at": None,
                       "phone_error": None, "responsible_id": None, "second_responsible_id": None,
                       "address_street": None,
                       "address_postcode": None, "address_commune": None, "commune_insee": None,
                       "address_access": None}


def default_choices(kept: Usager, removed: Usager) -> dict[str, str]:
    """The kept file's values, except where it has none and the other one has."""
    return {spec.name: "removed" if getattr(kept, spec.name) in (None, "") and getattr(removed, spec.name)
            not in (None, "") else "kept" for spec in MERGE_FIELDS}


# --- Who points at a usager -----------------------------------------------------------------------------------------

# Every foreign key to usagers.id, and what a merge does with it. tests/test_usager_merge.py fails when the metadata
# holds one that is not here: a new table pointing at usagers must say whether it follows the kept file.
FOLLOWERS = {
    ("rdv_usagers", "usager_id"): "the rdvs: the kept file takes the removed one's place (once, if both attended)",
    ("usagers", "responsible_id"): "the relatives: the kept file becomes their responsible",
    ("usagers", "second_responsible_id"): "the children it was second guardian of: the kept file is, unless it is "
                                          "already their first",
    ("rdvs", "notify_only_id"): "« ne prévenir que … »: the kept file is the guardian told",
    ("rdvs", "link_actor_id"): "the guardian who last acted on their link: the kept file",
    ("usagers", "merged_into_id"): "earlier tombstones: they point at the kept file (one hop, always)",
    ("usager_organisations", "usager_id"): "the kept file joins the removed one's organisations; the tombstone "
                                           "keeps its own, through which its links are still seen",
    ("messages", "usager_id"): "the outbox: messages sent and to send",
    ("waitlist_entries", "usager_id"): "the waiting list's entries",
    ("slot_offers", "usager_id"): "the slots offered from the waiting list",
    ("rdv_participations", "usager_id"): "places in collective sessions: the kept file is the adult told",
    ("participation_usagers", "usager_id"): "the people coming to a session: the kept file instead (once)",
}


# --- Finding --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    usager: Usager
    reasons: list[str]


def _identity(usager: Usager) -> Identity:
    return Identity(usager.name_key or "", usager.birth_date, usager.phone, usager.email)


def _family_pair(a: Usager, b: Usager) -> bool:
    """A parent and their child share a phone or an e-mail by nature: never shown as duplicates."""
    return b.id in (a.responsible_id, a.second_responsible_id) or a.id in (b.responsible_id, b.second_responsible_id)


def find_candidates(usager: Usager, actor=None, limit: int = CANDIDATE_LIMIT) -> list[Candidate]:
    """The files of the same territory that are likely this usager's (those the actor may see, when given)."""
    signals = []
    if usager.birth_date is not None:
        signals.append(Usager.birth_date == usager.birth_date)
    if usager.phone:
        signals.append(Usager.phone == usager.phone)
    if contact_key(usager.email):
        signals.append(Usager.email == contact_key(usager.email))
    if not signals:
        return []
    # The territory's few matches by the indexes, as plain rows (a child shares its birth date with dozens: loading
    # them all as objects would cost more than the query); then those the actor may see among the likely ones. As one
    # query, the scope's "member of one of these organisations" can make the planner read a large one's memberships.
    rows = db.session.execute(
        select(Usager.id, Usager.name_key, Usager.birth_date, Usager.phone, Usager.email, Usager.responsible_id,
               Usager.second_responsible_id)
        .where(Usager.territory_id == usager.territory_id, Usager.id != usager.id, Usager.merged_into_id.is_(None),
               or_(*signals)).order_by(Usager.id).limit(500)).all()
    me = _identity(usager)
    likely = {}
    for row in rows:
        reasons = likely_same(me, Identity(row.name_key or "", row.birth_date, row.phone, row.email))
        if (reasons and usager.id not in (row.responsible_id, row.second_responsible_id)
                and row.id not in (usager.responsible_id, usager.second_responsible_id)):
            likely[row.id] = reasons
    if not likely:
        return []
    statement = policies.usager_scope(actor) if actor is not None else select(Usager)
    others = db.session.scalars(statement.where(Usager.id.in_(list(likely))).order_by(Usager.id).limit(limit))
    return [Candidate(other, likely[other.id]) for other in others]


@dataclass(frozen=True)
class Pair:
    first: Usager
    second: Usager
    reasons: list[str]


def territory_pairs(actor, limit: int = PAIR_LIMIT) -> list[Pair]:
    """Likely duplicates among the files the actor may see: the same birth date and name key, or the same phone or
    e-mail, kept when `likely_same` agrees (names one letter apart are found from a file's own page)."""
    a, b = (aliased(Usager, policies.usager_scope(actor).subquery()) for _ in range(2))
    same = [and_(a.birth_date == b.birth_date, a.name_key == b.name_key), a.phone == b.phone, a.email == b.email]
    pairs: dict[tuple[int, int], Pair] = {}
    for condition in same:
        rows = db.session.execute(select(a, b).where(a.territory_id == b.territory_id, a.id < b.id, condition)
                                  .order_by(a.id, b.id).limit(limit * 2)).all()
        for first, second in rows:
            reasons = likely_same(_identity(first), _identity(second))
            if reasons and not _family_pair(first, second) and (first.id, second.id) not in pairs:
                pairs[(first.id, second.id)] = Pair(first, second, reasons)
    return sorted(pairs.values(), key=lambda pair: (pair.first.last_name.lower(), pair.first.id))[:limit]


# --- Merging --------------------------------------------------------------------------------------------------------


def rdv_ids(usager_id: int) -> list[int]:
    return list(db.session.scalars(select(rdv_usagers.c.rdv_id).where(rdv_usagers.c.usager_id == usager_id)
                                   .order_by(rdv_usagers.c.rdv_id)))


def revision(kept: Usager, removed: Usager) -> str:
    """What the comparison showed, as a short hash: a form posted after either file changed (a field, a relative,
    an rdv, a merge elsewhere) is refused instead of merging what nobody saw."""
    parts = []
    for usager in (kept, removed):
        parts.append(repr([spec.value(usager) for spec in MERGE_FIELDS]))
        parts.append(repr((usager.merged_into_id, sorted(relative.id for relative in usager.children),
                           rdv_ids(usager.id))))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _lock(usager_ids: list[int]) -> list[Usager | None]:
    """Both rows locked, in id order, and read again: a second merge of the same pair waits for the first, then
    finds the tombstone. SQLite has no row locks: its write lock is taken now instead."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        db.session.commit()  # end the reads of the request, so that the write lock comes first
        db.session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    else:
        db.session.expire_all()  # relatives and memberships too are read again, after the lock
    rows = {usager.id: usager for usager in db.session.scalars(
        select(Usager).where(Usager.id.in_(usager_ids)).order_by(Usager.id)
        .with_for_update().execution_options(populate_existing=True))}
    return [rows.get(usager_id) for usager_id in usager_ids]


def _overlap(kept: Usager, removed: Usager) -> Rdv | None:
    """A live rdv of one at the same time as a live rdv of the other (not the same rdv): one person cannot attend
    both, so these are two people, or one of the rdvs must be cancelled first."""
    now = utcnow()
    mine, theirs = aliased(Rdv), aliased(Rdv)
    link_a, link_b = rdv_usagers.alias(), rdv_usagers.alias()
    cancelled = [status for status in RdvStatus if status.is_cancelled]
    live = [mine.status.not_in(cancelled), theirs.status.not_in(cancelled), mine.ends_at > now, theirs.ends_at > now]
    return db.session.scalar(
        select(mine).join(link_a, link_a.c.rdv_id == mine.id)
        .join(theirs, and_(theirs.starts_at < mine.ends_at, theirs.ends_at > mine.starts_at, theirs.id != mine.id))
        .join(link_b, link_b.c.rdv_id == theirs.id)
        .where(link_a.c.usager_id == kept.id, link_b.c.usager_id == removed.id, *live)
        .order_by(mine.starts_at).limit(1))


def _ancestors(usager_id: int | None) -> set[int]:
    found: set[int] = set()
    while usager_id is not None and usager_id not in found and len(found) < 10:
        found.add(usager_id)
        usager_id = db.session.scalar(select(Usager.responsible_id).where(Usager.id == usager_id))
    return found


@dataclass
class MergeReport:
    kept: Usager
    removed_id: int
    rdvs: int = 0
    relatives: int = 0
    messages: int = 0
    waitlist: int = 0
    chosen: list[str] = field(default_factory=list)


def merge(actor, kept_id: int, removed_id: int, choices: dict[str, str], seen_revision: str) -> MergeReport:
    """Merge the removed file into the kept one, or raise MergeRefused; the caller commits."""
    if kept_id == removed_id:
        raise MergeRefused("Choisissez deux dossiers différents.")
    kept, removed = _lock([kept_id, removed_id])
    for usager in (kept, removed):
        policies.authorize(actor, "view", usager)
        if usager.merged_into_id is not None:
            raise MergeRefused("Ce dossier vient d'être fusionné avec un autre, sans doute par un collègue : "
                               "rouvrez la fiche pour voir le dossier conservé.")
    for usager in (kept, removed):
        policies.authorize(actor, "merge", usager)
    if kept.territory_id != removed.territory_id:
        raise MergeRefused("Ces deux dossiers appartiennent à deux territoires différents : ils ne peuvent pas être "
                           "fusionnés.")
    if revision(kept, removed) != seen_revision:
        raise MergeRefused("L'un des deux dossiers a changé depuis l'ouverture de la comparaison : relisez-la avant "
                           "de fusionner.")
    if _family_pair(kept, removed):
        parent, child = (removed, kept) if removed in kept.guardians else (kept, removed)
        raise MergeRefused(f"{parent.full_name} est responsable de {child.full_name} : on ne fusionne pas un parent "
                           "et son enfant.")
    unknown = set(choices) - {spec.name for spec in MERGE_FIELDS}
    if unknown or any(choice not in ("kept", "removed") for choice in choices.values()):
        raise MergeRefused("Choix de champ inconnu : rechargez la page.")
    responsible_id = (removed if choices.get("responsible_id") == "removed" else kept).responsible_id
    family = {kept.id, removed.id}
    second_id = (removed if choices.get("second_responsible_id") == "removed" else kept).second_responsible_id
    if second_id is not None and (family & _ancestors(second_id)):
        raise MergeRefused("Le second responsable choisi est l'un de ces dossiers ou un de leurs enfants : le "
                           "dossier gardé deviendrait son propre responsable.")
    if responsible_id is not None and (family & _ancestors(responsible_id)):
        raise MergeRefused("Le responsable choisi est l'un de ces dossiers ou un de leurs enfants : le dossier "
                           "gardé deviendrait son propre responsable.")
    clash = _overlap(kept, removed)
    if clash is not None:
        when = local_datetime(clash.starts_at, kept.territory.tz)
        raise MergeRefused(f"Les deux dossiers ont chacun un rendez-vous à venir en même temps (le {when}) : une "
                           "même personne ne peut pas être à deux rendez-vous à la fois. Annulez l'un des deux, "
                           "ou vérifiez qu'il s'agit bien de la même personne.")
    return _apply(kept, removed, choices)


def _apply(kept: Usager, removed: Usager, choices: dict[str, str]) -> MergeReport:
    report = MergeReport(kept, removed.id)
    taken = [spec for spec in MERGE_FIELDS if choices.get(spec.name) == "removed"]
    for spec in taken:
        if spec.name == "external_id":
            # Unique per territory: the tombstone lets go of it before the kept file takes it.
            external_id, removed.external_id = removed.external_id, None
            db.session.flush()
            kept.external_id = external_id
        else:
            spec.copy(removed, kept)
    report.chosen = [spec.label for spec in taken]
    for organisation in removed.organisations:
        if organisation not in kept.organisations:
            kept.organisations.append(organisation)
    for relative in list(removed.relatives):
        relative.responsible = kept
        report.relatives += 1
    for relative in list(removed.second_relatives):
        relative.second_responsible = kept
        report.relatives += 1
    # One adult is never both guardians of a child, nor its own guardian: the second place is freed then.
    for person in {kept, *kept.relatives, *kept.second_relatives}:
        if person.second_responsible is not None and person.second_responsible in (person.responsible, person):
            person.second_responsible = None
    db.session.execute(update(Rdv).where(Rdv.notify_only_id == removed.id).values(notify_only_id=kept.id),
                       execution_options={"synchronize_session": False})
    db.session.execute(update(Rdv).where(Rdv.link_actor_id == removed.id).values(link_actor_id=kept.id),
                       execution_options={"synchronize_session": False})
    for rdv in db.session.scalars(select(Rdv).where(Rdv.id.in_(rdv_ids(removed.id)))):
        rdv.usagers = [usager for usager in rdv.usagers if usager.id not in (kept.id, removed.id)] + [kept]
        report.rdvs += 1
    db.session.execute(update(Participation).where(Participation.usager_id == removed.id).values(usager_id=kept.id),
                       execution_options={"synchronize_session": False})
    for place in db.session.scalars(select(Participation).join(Participation.usagers).where(Usager.id == removed.id)):
        place.usagers = [usager for usager in place.usagers if usager.id not in (kept.id, removed.id)] + [kept]
    report.messages = db.session.execute(update(Message).where(Message.usager_id == removed.id)
                                         .values(usager_id=kept.id)).rowcount
    report.waitlist = db.session.execute(update(WaitlistEntry).where(WaitlistEntry.usager_id == removed.id)
                                         .values(usager_id=kept.id)).rowcount
    db.session.execute(update(SlotOffer).where(SlotOffer.usager_id == removed.id).values(usager_id=kept.id))
    db.session.execute(update(Usager).where(Usager.merged_into_id == removed.id).values(merged_into_id=kept.id),
                       execution_options={"synchronize_session": False})
    for name, value in ERASED_ON_TOMBSTONE.items():
        setattr(removed, name, value)
    if removed.external_id is not None and removed.external_id == kept.external_id:
        removed.external_id = None
    removed.merged_into_id, removed.merged_at = kept.id, utcnow()
    actor = ambient_actor()
    db.session.add(AuditEvent(
        territory_id=kept.territory_id, object_type=AuditObject.USAGER, object_id=kept.id,
        action=AuditAction.MERGED, party=actor.party, agent_id=actor.agent_id, via=actor.via,
        changes=[{"field": "merged_from_id", "old": None, "new": removed.id}]
        + ([{"field": "kept_from_merged", "old": None, "new": ", ".join(report.chosen)}] if report.chosen else [])))
    db.session.flush()
    return report

