"""Sectors: the communes (INSEE codes) and streets (BAN street codes) a territory's lieux and agents serve."""
from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.agents import Agent
from lapins.models.territories import Lieu, Territory

lieu_sectors = Table(
    "lieu_sectors",
    db.metadata,
    Column("lieu_id", ForeignKey("lieux.id", ondelete="CASCADE"), primary_key=True),
    Column("sector_id", ForeignKey("sectors.id", ondelete="CASCADE"), primary_key=True, index=True),
)

agent_sectors = Table(
    "agent_sectors",
    db.metadata,
    Column("agent_id", ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("sector_id", ForeignKey("sectors.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Sector(db.Model):
    __tablename__ = "sectors"
    __table_args__ = (Index("uq_sectors_territory_name", "territory_id", "name", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))

    territory: Mapped[Territory] = relationship()
    zones: Mapped[list[SectorZone]] = relationship(back_populates="sector", cascade="all, delete-orphan",
                                                   order_by="(SectorZone.commune_code, SectorZone.street_code)")
    lieux: Mapped[list[Lieu]] = relationship(secondary=lieu_sectors, order_by="Lieu.name")
    agents: Mapped[list[Agent]] = relationship(secondary=agent_sectors, order_by="(Agent.last_name, Agent.first_name)")

    def __repr__(self) -> str:
        return f"<Sector {self.id}>"


class SectorZone(db.Model):
    """A whole commune (`street_code` empty) or one street of it, in one sector. The territory is copied here so that
    the database itself refuses a commune or a street in two sectors of a territory (an empty string rather than NULL
    for « the whole commune », since NULLs never collide in a unique index)."""

    __tablename__ = "sector_zones"
    __table_args__ = (Index("uq_sector_zones_place", "territory_id", "commune_code", "street_code", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sector_id: Mapped[int] = mapped_column(ForeignKey("sectors.id", ondelete="CASCADE"), index=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"))
    commune_code: Mapped[str] = mapped_column(String(5))
    street_code: Mapped[str] = mapped_column(String(20), default="", server_default="")

    sector: Mapped[Sector] = relationship(back_populates="zones")

    def __repr__(self) -> str:
        return f"<SectorZone {self.id}>"
