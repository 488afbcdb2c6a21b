"""When agents work (plages d'ouverture) and when they don't (absences), in the territory's local time; a plage's
dates removed or given other hours one by one (exceptions)."""
from __future__ import annotations

from datetime import date, time

from sqlalchemy import CheckConstraint, Column, Date, ForeignKey, String, Table, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.slots import engine as slots
from lapins.infra.extensions import db
from lapins.models.agents import Agent
from lapins.models.motifs import Motif
from lapins.models.territories import Lieu, Organisation

plage_motifs = Table(
    "plage_motifs",
    db.metadata,
    Column("plage_id", ForeignKey("plages_ouverture.id", ondelete="CASCADE"), primary_key=True),
    Column("motif_id", ForeignKey("motifs.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class WeeklyRecurrenceMixin:
    """Local-time recurrence: on `weekdays` (bitmask, Monday = bit 0) every `every_n_weeks` weeks from `first_day`."""

    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date | None] = mapped_column(Date)
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    weekdays: Mapped[int] = mapped_column(default=0)
    every_n_weeks: Mapped[int] = mapped_column(default=1)

    @property
    def recurrence(self) -> slots.Recurrence:
        return slots.Recurrence(
            first_day=self.first_day,
            last_day=self.last_day,
            start_time=self.start_time,
            end_time=self.end_time,
            weekdays=self.weekdays,
            every_n_weeks=self.every_n_weeks,
        )

    @property
    def weekday_numbers(self) -> list[int]:
        return [day for day in range(7) if self.weekdays & (1 << day)]


class PlageOuverture(WeeklyRecurrenceMixin, db.Model):
    __tablename__ = "plages_ouverture"
    __table_args__ = (
        CheckConstraint("start_time < end_time", name="times_in_order"),
        CheckConstraint("every_n_weeks >= 1", name="every_n_weeks_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    lieu_id: Mapped[int | None] = mapped_column(ForeignKey("lieux.id"), index=True)
    title: Mapped[str] = mapped_column(String(160))

    organisation: Mapped[Organisation] = relationship()
    agent: Mapped[Agent] = relationship()
    lieu: Mapped[Lieu | None] = relationship()
    motifs: Mapped[list[Motif]] = relationship(secondary=plage_motifs, order_by="Motif.name")
    exceptions: Mapped[list[PlageException]] = relationship(
        back_populates="plage", cascade="all, delete-orphan", order_by="PlageException.day")

    @property
    def recurrence(self) -> slots.Recurrence:
        """The weekly pattern with its dates removed or changed."""
        base = super().recurrence
        if not self.exceptions:
            return base
        return slots.Recurrence(base.first_day, base.last_day, base.start_time, base.end_time, base.weekdays,
                                base.every_n_weeks, tuple(exception.as_engine for exception in self.exceptions))

    def exception_on(self, day: date) -> PlageException | None:
        return next((exception for exception in self.exceptions if exception.day == day), None)

    def __repr__(self) -> str:
        return f"<PlageOuverture {self.id}>"


class PlageException(db.Model):
    """One date of a plage removed (no times) or opened at other local hours (« cette date seulement »).

    Local wall times like the plage's own: 09:00 stays 09:00 across a DST change. Another lieu for one date is the
    date removed here plus a one-date plage at that lieu (lapins.agenda.schedule_services.except_date).
    """

    __tablename__ = "plage_exceptions"
    __table_args__ = (
        UniqueConstraint("plage_id", "day"),  # also the index that reads a plage's exceptions
        CheckConstraint("(start_time IS NULL AND end_time IS NULL) OR "
                        "(start_time IS NOT NULL AND end_time IS NOT NULL AND start_time < end_time)",
                        name="removed_or_times_in_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plage_id: Mapped[int] = mapped_column(ForeignKey("plages_ouverture.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    start_time: Mapped[time | None] = mapped_column(Time)
    end_time: Mapped[time | None] = mapped_column(Time)

    plage: Mapped[PlageOuverture] = relationship(back_populates="exceptions")

    @property
    def removed(self) -> bool:
        return self.start_time is None

    @property
    def as_engine(self) -> slots.DayException:
        return slots.DayException(self.day, self.start_time, self.end_time)

    def __repr__(self) -> str:
        return f"<PlageException {self.plage_id} {self.day}>"


class Absence(WeeklyRecurrenceMixin, db.Model):
    """An agent's absence. With no weekdays it is one-off: from first_day start_time to last_day end_time."""

    __tablename__ = "absences"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    title: Mapped[str] = mapped_column(String(160))

    agent: Mapped[Agent] = relationship()

    def __repr__(self) -> str:
        return f"<Absence {self.id}>"
