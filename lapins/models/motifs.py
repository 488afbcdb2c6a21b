"""Motifs: what an rdv is for, how long it lasts and where it happens."""
from __future__ import annotations

import enum

from sqlalchemy import Enum, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.territories import Organisation


class LocationType(enum.StrEnum):
    ON_SITE = "on_site"
    PHONE = "phone"
    HOME = "home"

    @property
    def label(self) -> str:
        return {"on_site": "Sur place", "phone": "Par téléphone", "home": "À domicile"}[self.value]


class Motif(db.Model):
    __tablename__ = "motifs"

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

    organisation: Mapped[Organisation] = relationship()

    @property
    def public_name(self) -> str:
        """The motif as families' messages may name it."""
        return DISCREET_NAME if self.discreet else self.name

    def __repr__(self) -> str:
        return f"<Motif {self.id}>"


DISCREET_NAME = "Rendez-vous PMI"
