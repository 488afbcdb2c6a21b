"""Territory administrators: the agents who administer a whole département (its settings, its organisations)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.territories import Territory

if TYPE_CHECKING:
    from lapins.models.agents import Agent


class TerritoryAdmin(db.Model):
    """One agent administering one territory. It grants no sight of rdvs or usagers: those follow the agent's role
    in each organisation (lapins.policies)."""

    __tablename__ = "territory_admins"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id", ondelete="CASCADE"), primary_key=True,
                                              index=True)

    agent: Mapped[Agent] = relationship(back_populates="territory_admin_of")
    territory: Mapped[Territory] = relationship()

    def __repr__(self) -> str:
        return f"<TerritoryAdmin {self.agent_id}@{self.territory_id}>"
