"""Exports built in the background: who asked, for which scope, how far along, and the file once done."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.agents import Agent
from lapins.models.territories import Organisation, Territory
from lapins.models.types import UTCDateTime, utcnow


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, values_callable=lambda e: [m.value for m in e])


class ExportStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return {"pending": "En attente", "running": "En cours", "done": "Prêt", "failed": "Échec"}[self.value]

    @property
    def is_final(self) -> bool:
        return self in (ExportStatus.DONE, ExportStatus.FAILED)


class ExportKind(enum.StrEnum):
    RDVS = "rdvs"  # one row per rdv, without anything that names a family

    @property
    def label(self) -> str:
        return {"rdvs": "Liste des rendez-vous"}[self.value]


class Export(db.Model):
    __tablename__ = "exports"
    # The beat's scan for exports whose worker stopped beating (lapins.stats.exports.reclaim_stale).
    __table_args__ = (Index("ix_exports_status_heartbeat", "status", "heartbeat_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"), index=True)
    # Set for an organisation's export; empty for a whole territory's.
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[ExportKind] = mapped_column(_enum(ExportKind))
    file_format: Mapped[str] = mapped_column(String(10))  # "csv" or "xlsx"
    params: Mapped[dict] = mapped_column(JSON, default=dict)  # the period and filters, as the page had them
    status: Mapped[ExportStatus] = mapped_column(_enum(ExportStatus), default=ExportStatus.PENDING)
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int] = mapped_column(default=0)
    filename: Mapped[str | None] = mapped_column(String(120))
    # Kept in the database rather than on a disk, so that the web and the worker need not share one.
    content: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Last sign of life: written when asked for, when claimed and with each batch; a running export whose heartbeat
    # is older than EXPORT_STALE_AFTER_SECONDS lost its worker and is taken up again.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How many times a worker claimed it; also the claim's number, so that a worker whose export was taken up again
    # by another can no longer write to it.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")

    requested_by: Mapped[Agent] = relationship()
    territory: Mapped[Territory] = relationship()
    organisation: Mapped[Organisation | None] = relationship()

    @property
    def percent(self) -> int:
        if self.status == ExportStatus.DONE:
            return 100
        return int(100 * self.progress_done / self.progress_total) if self.progress_total else 0

    def __repr__(self) -> str:
        return f"<Export {self.id} {self.kind} {self.status}>"


