"""Motifs: what an rdv is for, how long it lasts and where it happens; a territory's catalogue of motifs that its
organisations adopt (issue 23.6)."""
from __future__ import annotations

import enum

from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.territories import Organisation, Territory
from lapins.models.types import UTCDateTime, utcnow


class LocationType(enum.StrEnum):
    ON_SITE = "on_site"
    PHONE = "phone"
    HOME = "home"

    @property
    def label(self) -> str:
        return {"on_site": "Sur place", "phone": "Par téléphone", "home": "À domicile"}[self.value]


class Motif(db.Model):
    __tablename__ = "motifs"
    # One motif per catalogue entry in an organisation (two adoptions at once: the second is refused); NULLs, the
    # organisation's own motifs, are distinct for both databases.
    __table_args__ = (Index("uq_motifs_organisation_catalogue", "organisation_id", "catalogue_id", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(160))
    duration_minutes: Mapped[int] = mapped_column(default=30)
    location_type: Mapped[LocationType] = mapped_column(
        Enum(LocationType, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=LocationType.ON_SITE,
    )
    color: Mapped[str] = mapped_column(String(7), default="#000091")
    active: Mapped[bool] = mapped_column(default=True)
    # Families are told of rdvs of this motif (confirmation, changes, reminders) unless this is off.
    notify: Mapped[bool] = mapped_column(default=True)
    # A discreet motif is never named where someone else may read (SMS, e-mails, ICS, the family page): they say
    # « Rendez-vous PMI » with the lieu and the time (issue 23.2).
    discreet: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Hours before the rdv ("48", "72,24"); empty means the territory's offsets.
    reminder_offsets: Mapped[str | None] = mapped_column(String(40))
    # A family may cancel from its link until this many hours before the rdv; later, it must call the centre.
    cancellation_limit_hours: Mapped[int] = mapped_column(default=4)
    # A family may move its rdv from its link (« Changer de date ») until this many hours before it, at most
    # `family_moves_max` times (0: never), onto a free slot within `booking_horizon_weeks` weeks.
    move_limit_hours: Mapped[int] = mapped_column(default=24, server_default="24")
    family_moves_max: Mapped[int] = mapped_column(default=2, server_default="2")
    booking_horizon_weeks: Mapped[int] = mapped_column(default=8, server_default="8")
    # Collective sessions (ateliers): rdvs with a capacity and participants (lapins.booking.sessions); a family's
    # places count 1 per family, or 1 per person (a parent and a baby: 2) when `places_per_person`.
    collective: Mapped[bool] = mapped_column(default=False, server_default=false())
    places_per_person: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Online booking by families (issue 15): offered only when on here, on the lieu and on the territory; from
    # `online_min_hours` after now to `online_max_days` ahead. A sectorised motif is offered by the lieux (and agents)
    # whose sectors hold the family's address; another one by every lieu of the territory offering it.
    online_bookable: Mapped[bool] = mapped_column(default=False, server_default=false())
    online_min_hours: Mapped[int] = mapped_column(default=2, server_default="2")
    online_max_days: Mapped[int] = mapped_column(default=42, server_default="42")
    sectorised: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Booked online by the person it is for (prenatal, family planning), not for a child: the form asks for the
    # person's own birth date rather than a child's first name and birth date.
    online_for_self: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The territory's catalogue entry this motif was adopted from or linked to (issue 23.6): its fields follow the
    # entry's, but for those the entry lets organisations adjust and this one did (MotifCatalogueEntry).
    catalogue_id: Mapped[int | None] = mapped_column(ForeignKey("motif_catalogue.id"), index=True)

    organisation: Mapped[Organisation] = relationship()
    catalogue_entry: Mapped[MotifCatalogueEntry | None] = relationship(back_populates="motifs")

    @property
    def public_name(self) -> str:
        """The motif as families' messages may name it."""
        return DISCREET_NAME if self.discreet else self.name

    def __repr__(self) -> str:
        return f"<Motif {self.id}>"


DISCREET_NAME = "Rendez-vous PMI"

# The fields a catalogue entry defines for the motifs adopted from it, in the order its pages show them, with their
# French labels. A motif's other fields (active, collective) stay its organisation's own.
CATALOGUE_FIELDS = {
    "name": "Nom", "duration_minutes": "Durée (minutes)", "location_type": "Lieu du rendez-vous", "color": "Couleur",
    "reminder_offsets": "Rappels", "cancellation_limit_hours": "Annulation en ligne (heures avant)",
    "move_limit_hours": "Changement de date en ligne (heures avant)",
    "family_moves_max": "Changements de date par rendez-vous", "booking_horizon_weeks": "Créneaux proposés (semaines)",
    "notify": "Familles prévenues", "discreet": "Discret", "online_bookable": "Réservable en ligne",
    "online_min_hours": "En ligne : pas avant (heures)", "online_max_days": "En ligne : pas après (jours)",
    "sectorised": "Sectorisé",
}
DEFAULT_ADJUSTABLE = ("duration_minutes", "color", "reminder_offsets")


class MotifCatalogueEntry(db.Model):
    """A motif defined once by a territory's administrators (issue 23.6). An organisation adopts it (a Motif with
    `catalogue_id`) and may change on its motif only the fields named in `adjustable`; a change to the entry reaches
    its motifs for every field they did not adjust (lapins.admin.catalogue)."""

    __tablename__ = "motif_catalogue"
    __table_args__ = (UniqueConstraint("territory_id", "name", name="uq_motif_catalogue_territory_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"), index=True)
    name: Mapped[str] = mapped_column(String(160))
    duration_minutes: Mapped[int] = mapped_column(default=30)
    location_type: Mapped[LocationType] = mapped_column(
        Enum(LocationType, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e]),
        default=LocationType.ON_SITE,
    )
    color: Mapped[str] = mapped_column(String(7), default="#000091")
    reminder_offsets: Mapped[str | None] = mapped_column(String(40))
    cancellation_limit_hours: Mapped[int] = mapped_column(default=4)
    move_limit_hours: Mapped[int] = mapped_column(default=24)
    family_moves_max: Mapped[int] = mapped_column(default=2)
    booking_horizon_weeks: Mapped[int] = mapped_column(default=8)
    notify: Mapped[bool] = mapped_column(default=True)
    discreet: Mapped[bool] = mapped_column(default=False)
    online_bookable: Mapped[bool] = mapped_column(default=False)
    online_min_hours: Mapped[int] = mapped_column(default=2)
    online_max_days: Mapped[int] = mapped_column(default=42)
    sectorised: Mapped[bool] = mapped_column(default=False)
    # The names of CATALOGUE_FIELDS an organisation may change on its adopted motif.
    adjustable: Mapped[list[str]] = mapped_column(JSON, default=lambda: list(DEFAULT_ADJUSTABLE))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    territory: Mapped[Territory] = relationship()
    motifs: Mapped[list[Motif]] = relationship(back_populates="catalogue_entry")

    def values(self) -> dict:
        return {name: getattr(self, name) for name in CATALOGUE_FIELDS}

    def is_adjustable(self, name: str) -> bool:
        return name in (self.adjustable or ())

    def __repr__(self) -> str:
        return f"<MotifCatalogueEntry {self.id}>"
