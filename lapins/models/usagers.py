"""Usagers: a responsible person and the relatives (children) they bring to rdvs."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Column, Date, ForeignKey, Index, String, Table, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.locale.matching import KEY_LENGTH, name_key
from lapins.models.territories import Organisation, Territory
from lapins.models.types import UTCDateTime, utcnow

usager_organisations = Table(
    "usager_organisations",
    db.metadata,
    Column("usager_id", ForeignKey("usagers.id", ondelete="CASCADE"), primary_key=True),
    Column("organisation_id", ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Usager(db.Model):
    __tablename__ = "usagers"
    # A usager imported from another tool keeps its id there: importing the same file again stores them once.
    __table_args__ = (
        Index("uq_usagers_territory_external", "territory_id", "external_id", unique=True),
        # The duplicate finder: "usagers of territory T born on D", their name keys read from the index alone
        # (lapins.agenda.duplicates; bench `usagers.duplicates`). Phones have their own index; e-mails this one.
        Index("ix_usagers_territory_birth_name", "territory_id", "birth_date", "name_key"),
        Index("ix_usagers_territory_email", "territory_id", "email"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"), index=True)
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("usagers.id"), index=True)
    # A child's second responsible adult (separated parents, issue 23.3), told of its rdvs on their own link. Two at
    # most, by construction; lapins.agenda.guardians keeps the rules (never the child itself nor a child).
    second_responsible_id: Mapped[int | None] = mapped_column(ForeignKey("usagers.id", ondelete="SET NULL"),
                                                              index=True)
    first_name: Mapped[str] = mapped_column(String(80))
    last_name: Mapped[str] = mapped_column(String(80), index=True)
    birth_date: Mapped[date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164, validated with phonenumbers
    email: Mapped[str | None] = mapped_column(String(254))
    sms_consent: Mapped[bool] = mapped_column(default=False)
    email_consent: Mapped[bool] = mapped_column(default=False)
    # Set when the SMS provider refused the number for good (invalid, unsubscribed): no SMS until it changes.
    phone_undeliverable_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    phone_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    external_id: Mapped[str | None] = mapped_column(String(80))
    # The postal address, for home visits (issue 23.4): free text checked by lapins.locale.addresses; the commune's
    # INSEE code is optional, filled when a form can offer the communes' list.
    address_street: Mapped[str | None] = mapped_column(String(200))
    address_postcode: Mapped[str | None] = mapped_column(String(5))
    address_commune: Mapped[str | None] = mapped_column(String(80))
    commune_insee: Mapped[str | None] = mapped_column(String(5))
    address_access: Mapped[str | None] = mapped_column(String(200))  # code, étage, bâtiment
    # lapins.locale.matching.name_key of the names, kept in step below (and by the seeding's bulk inserts).
    name_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    # A file merged into another (lapins.agenda.duplicates) stays as a tombstone, with no personal data, so that its
    # id, links and API clients find the kept file. Deleting the kept file deletes its tombstones.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("usagers.id", ondelete="CASCADE"), index=True)
    merged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    territory: Mapped[Territory] = relationship()
    organisations: Mapped[list[Organisation]] = relationship(secondary=usager_organisations)
    responsible: Mapped[Usager | None] = relationship(remote_side=[id], back_populates="relatives",
                                                      foreign_keys=[responsible_id])
    relatives: Mapped[list[Usager]] = relationship(back_populates="responsible", order_by="Usager.birth_date",
                                                   foreign_keys=[responsible_id])
    second_responsible: Mapped[Usager | None] = relationship(remote_side=[id], back_populates="second_relatives",
                                                             foreign_keys=[second_responsible_id])
    second_relatives: Mapped[list[Usager]] = relationship(back_populates="second_responsible",
                                                          order_by="Usager.birth_date",
                                                          foreign_keys=[second_responsible_id])
    merged_into: Mapped[Usager | None] = relationship(remote_side=[id], foreign_keys=[merged_into_id])

    @property
    def is_merged(self) -> bool:
        return self.merged_into_id is not None

    @property
    def guardians(self) -> list[Usager]:
        """The child's responsible adults, the first one first (empty for an adult)."""
        return [person for person in (self.responsible, self.second_responsible) if person is not None]

    @property
    def children(self) -> list[Usager]:
        """The children this adult is responsible for, first or second."""
        return sorted({*self.relatives, *self.second_relatives}, key=lambda child: (child.birth_date is None,
                                                                                   child.birth_date, child.id))

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def postal_address(self) -> PostalAddress | None:
        """Its own address, else (a child) its responsible person's; None when neither has one."""
        for person in (self, self.responsible):
            if person is not None and person.address_street and person.address_commune:
                return PostalAddress(person.address_street, person.address_postcode, person.address_commune,
                                     person.address_access)
        return None

    def __repr__(self) -> str:
        return f"<Usager {self.id}>"


@dataclass(frozen=True)
class PostalAddress:
    street: str
    postcode: str | None
    commune: str
    access: str | None = None

    @property
    def one_line(self) -> str:
        """« 12 rue des Lilas, 93200 Saint-Denis », without the access notes (said apart, to agents only)."""
        return f"{self.street}, {' '.join(part for part in (self.postcode, self.commune) if part)}"

    @property
    def with_access(self) -> str:
        return f"{self.one_line} ({self.access})" if self.access else self.one_line


@event.listens_for(Usager, "before_insert")
@event.listens_for(Usager, "before_update")
def _keep_name_key(mapper, connection, usager: Usager) -> None:
    usager.name_key = name_key(usager.first_name, usager.last_name)
