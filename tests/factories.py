"""factory-boy factories bound to the Flask-SQLAlchemy session."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import factory
from factory.alchemy import SQLAlchemyModelFactory

from lapins.infra.extensions import db
from lapins.models import (
    Absence, Agent, AgentRole, Lieu, Motif, Organisation, PlageOuverture, Rdv, Role, Territory, Usager,
)
from lapins.models.waitlist import WaitlistEntry

PASSWORD = "motdepasse-solide-2026"


class Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


# Numbers some tests give their territory explicitly (for its holidays, or as the CLI's example) are never
# generated: a generated territory must not collide with a chosen one, whatever the order the tests run in.
CHOSEN_NUMBERS = {"57", "59", "62", "67", "68", "69", "75", "92", "93"}
GENERATED_NUMBERS = [f"{n:02d}" for n in range(1, 96) if f"{n:02d}" not in CHOSEN_NUMBERS]


class TerritoryFactory(Base):
    class Meta:
        model = Territory

    number = factory.Sequence(lambda n: GENERATED_NUMBERS[n % len(GENERATED_NUMBERS)])
    name = factory.Sequence(lambda n: f"Département {n}")
    timezone = "Europe/Paris"
    # The settings of a territory from before J-3 + J-1 (one reminder 48 h before, quiet until 08:00): the tests
    # written for them count one reminder. tests/test_reminder_plan.py builds new territories' defaults itself.
    reminder_offsets = "48"
    quiet_hours_end = time(8, 0)


class OrganisationFactory(Base):
    class Meta:
        model = Organisation

    territory = factory.SubFactory(TerritoryFactory)
    name = factory.Sequence(lambda n: f"PMI secteur {n}")


class LieuFactory(Base):
    class Meta:
        model = Lieu

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Centre PMI {n}")
    address = "12 rue de la République, 75011 Paris"
    phone = "+33140000000"


class AgentFactory(Base):
    class Meta:
        model = Agent

    email = factory.Sequence(lambda n: f"agent{n}@pmi.example.fr")
    first_name = "Claire"
    last_name = factory.Sequence(lambda n: f"Martin{n}")
    password_hash = factory.LazyFunction(lambda: _hashed(PASSWORD))

    @factory.post_generation
    def organisation(agent, create, extracted, **kwargs):
        """AgentFactory(organisation=org, organisation__role=Role.ADMIN) gives the agent a role there."""
        if extracted is not None:
            agent.roles.append(AgentRole(organisation=extracted, role=kwargs.get("role", Role.AGENT)))
            if create:
                db.session.commit()


_HASHES: dict[str, str] = {}


def _hashed(password: str) -> str:
    from werkzeug.security import generate_password_hash

    if password not in _HASHES:  # hashing is deliberately slow: do it once per test session
        _HASHES[password] = generate_password_hash(password)
    return _HASHES[password]


class MotifFactory(Base):
    class Meta:
        model = Motif

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Consultation nourrisson {n}")
    duration_minutes = 30


class PlageFactory(Base):
    class Meta:
        model = PlageOuverture

    organisation = factory.SelfAttribute("lieu.organisation")
    agent = factory.SubFactory(AgentFactory)
    lieu = factory.SubFactory(LieuFactory)
    title = "Consultations"
    first_day = factory.LazyFunction(lambda: date.today())
    last_day = None
    start_time = time(9, 0)
    end_time = time(12, 0)
    weekdays = 0b0011111  # Monday to Friday
    every_n_weeks = 1


class AbsenceFactory(Base):
    class Meta:
        model = Absence

    agent = factory.SubFactory(AgentFactory)
    title = "Formation"
    first_day = factory.LazyFunction(lambda: date.today())
    last_day = factory.SelfAttribute("first_day")
    start_time = time(9, 0)
    end_time = time(17, 0)
    weekdays = 0


class UsagerFactory(Base):
    class Meta:
        model = Usager

    territory = factory.SubFactory(TerritoryFactory)
    first_name = "Inès"
    last_name = factory.Sequence(lambda n: f"Durand{n}")
    phone = "+33612345678"
    sms_consent = True


class RdvFactory(Base):
    class Meta:
        model = Rdv

    organisation = factory.SelfAttribute("motif.organisation")
    motif = factory.SubFactory(MotifFactory)
    lieu = None
    starts_at = factory.LazyFunction(lambda: datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1))
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + timedelta(minutes=30))

    @factory.post_generation
    def agents(rdv, create, extracted, **kwargs):
        if extracted:
            rdv.set_agents(list(extracted))
            if create:
                db.session.commit()


class WaitlistEntryFactory(Base):
    class Meta:
        model = WaitlistEntry

    organisation = factory.SelfAttribute("motif.organisation")
    motif = factory.SubFactory(MotifFactory)
    usager = factory.SubFactory(UsagerFactory, territory=factory.SelfAttribute("..motif.organisation.territory"))
    priority = 0
