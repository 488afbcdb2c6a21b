"""The waiting list's own races: each branch that only a concurrent run or answer reaches, made to happen.

A run of the offer engine (the beat's, or a kicked task) lists the open slots without a hold, then offers each
under its agents' booking locks, looking again once it has them. What it may find then, each tested by stopping a
real run just before its lock (`Gate`) while this test, on its own connection, does what another run, an agent or
a family would have done meanwhile:
- the slot already held (by another run, or a hold on an overlapping slot of the same agent): no second offer;
- one of its agents booked again at that time: the slot is closed, no offer;
- the slot taken by a family who accepted it: left as it is;
- a hold written behind the lock's back (PostgreSQL): the unique index refuses the second one, the run rolls back
  that slot quietly and goes on with the others.
And the family's own race: accepting and declining one offer at the same moment (two tabs, a double click): one
answer wins, whichever it is, and the other is told what happened; held inside the server so that both have read
the offer as held.
"""
from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import requests
import time_machine
from sqlalchemy import func, select

from lapins import create_app
from lapins.booking import book_rdv
from lapins.infra.extensions import db
from lapins.models import (
    EntryStatus, Message, MessageKind, OfferStatus, Rdv, RdvStatus, Role, SlotOffer, SlotStatus, WaitlistEntry,
    WaitlistSlot,
)
from lapins.notifications.offer_links import offer_token
from lapins.waitlist import offers
from tests.races import PARTY_HEADER, Gate, HeldStatements, acting_as, live_server

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)  # Monday 2 March 2026, 09:00 in Paris
WEDNESDAY = date(2026, 3, 4)
# The offer engine's lock on the slot's agents: BEGIN IMMEDIATE on SQLite, then the agents' rows bumped.
LOCK = ("BEGIN IMMEDIATE", "UPDATE agents SET booking_version")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def wednesday(hour: int, minute: int = 0) -> datetime:
    return datetime.combine(WEDNESDAY, time(hour, minute), PARIS).astimezone(timezone.utc)


@pytest.fixture()
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def make_world(database_url: str):
    """An app over its own database: one agent open Monday to Friday 9h–12h, two waiting families (the first
    placed higher), and a slot freed on Wednesday 10:00."""
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, WTF_CSRF_ENABLED=True)
    context = app.app_context()
    context.push()
    organisation = factories.OrganisationFactory()
    lieu = factories.LieuFactory(organisation=organisation)
    motif = factories.MotifFactory(organisation=organisation, duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=NOW.date(), start_time=time(9),
                           end_time=time(12), weekdays=0b0011111)
    families = [factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                        last_name=name, phone=phone)
                for name, phone in (("Payet", "+33611111111"), ("Hoarau", "+33622222222"))]
    entries = [factories.WaitlistEntryFactory(usager=family, motif=motif, organisation=organisation,
                                              priority=priority, created_at=NOW - timedelta(days=1))
               for family, priority in zip(families, (2, 1))]
    world = SimpleNamespace(app=app, context=context, organisation=organisation, lieu=lieu, motif=motif, agent=agent,
                            entry_ids=[entry.id for entry in entries], family_ids=[family.id for family in families])
    world.slot = free(world, wednesday(10))
    return world


def free(world, starts_at: datetime, minutes: int = 30) -> int:
    slot = offers.record_freed(world.organisation.id, world.motif.id, world.lieu.id, [world.agent.id], starts_at,
                               starts_at + timedelta(minutes=minutes), source_rdv_id=None)
    return slot.id


def close(world) -> None:
    db.session.remove()
    db.engine.dispose()
    world.context.pop()


@pytest.fixture()
def world(database_url, frozen):
    world = make_world(database_url)
    yield world
    close(world)


class Run(threading.Thread):
    """A run of the offer engine in a thread of its own (its own app context, session and connection), named as a
    racing party: `result` is what it returned, `error` what it raised."""

    def __init__(self, app, name: str, work) -> None:
        super().__init__(daemon=True)
        self.app, self.party, self.work, self.result, self.error = app, name, work, None, None

    def run(self) -> None:
        with self.app.app_context(), acting_as(self.party):
            try:
                self.result = self.work()
            except BaseException as error:  # noqa: BLE001  (re-raised by the test)
                self.error = error
            finally:
                db.session.remove()

    def outcome(self):
        self.join(30)
        assert not self.is_alive(), f"{self.party} did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def while_stopped_before(world, prefixes, work, meanwhile):
    """Runs `work` as "late run", stops it at its first statement of `prefixes`, does `meanwhile` here, then lets it
    go on; returns what `work` returned."""
    with Gate(db.engine, prefixes, "late run") as gate:
        late = Run(world.app, "late run", work)
        late.start()
        gate.wait_reached()
        meanwhile()
        gate.open()
        return late.outcome()


def state() -> SimpleNamespace:
    db.session.expire_all()
    offers_ = list(db.session.scalars(select(SlotOffer).order_by(SlotOffer.id)))
    return SimpleNamespace(
        offers=[(offer.slot_id, offer.entry_id, offer.status) for offer in offers_],
        held=[offer for offer in offers_ if offer.status == OfferStatus.HELD],
        offer_messages=db.session.scalar(select(func.count(Message.id)).where(Message.kind == MessageKind.OFFER)),
        rdvs=db.session.scalar(select(func.count(Rdv.id)).where(Rdv.status == RdvStatus.UNKNOWN)),
    )


# --- A run that waited for the lock -------------------------------------------------------------------------------

def test_a_run_that_finds_the_slot_held_once_it_has_the_lock_makes_no_second_offer(world):
    made_meanwhile = []

    made_late = while_stopped_before(world, LOCK, offers.reallocate,
                                     meanwhile=lambda: made_meanwhile.append(offers.reallocate()))

    assert made_meanwhile == [1] and made_late == 0
    after = state()
    assert after.offers == [(world.slot, world.entry_ids[0], OfferStatus.HELD)]
    assert after.offer_messages == 1  # one SMS, to the first family only


def test_a_hold_on_an_overlapping_slot_of_the_same_agent_made_meanwhile_keeps_the_run_from_offering(world):
    """Two freed slots overlap (10:00 and 10:15, the agent had been booked over a conflict): once one is held, the
    other is not offered to the second family, though the unique index (one hold per slot) would allow it."""
    overlapping = free(world, wednesday(10, 15))

    made_late = while_stopped_before(world, LOCK, lambda: offers.offer_slot(overlapping, NOW),
                                     meanwhile=lambda: offers.offer_slot(world.slot, NOW))

    assert made_late is None
    after = state()
    assert after.offers == [(world.slot, world.entry_ids[0], OfferStatus.HELD)] and after.offer_messages == 1
    assert db.session.get(WaitlistSlot, overlapping).status == SlotStatus.OPEN  # offered once the hold ends


def test_an_agent_booked_at_that_time_meanwhile_closes_the_slot_instead_of_offering_it(world):
    from tests import factories

    walk_in = factories.UsagerFactory(territory=world.organisation.territory, organisations=[world.organisation])

    def booked_meanwhile():
        book_rdv(actor=world.agent, motif=world.motif, agents=[world.agent], usagers=[walk_in], lieu=world.lieu,
                 starts_at=wednesday(10))

    made_late = while_stopped_before(world, LOCK, offers.reallocate, meanwhile=booked_meanwhile)

    assert made_late == 0
    after = state()
    assert after.offers == [] and after.offer_messages == 0 and after.rdvs == 1
    assert db.session.get(WaitlistSlot, world.slot).status == SlotStatus.CLOSED


def test_a_slot_a_family_took_meanwhile_is_left_taken(world):
    def offered_and_accepted_meanwhile():
        offer = offers.offer_slot(world.slot, NOW)
        offers.accept(offer, NOW)

    made_late = while_stopped_before(world, LOCK, lambda: offers.offer_slot(world.slot, NOW),
                                     meanwhile=offered_and_accepted_meanwhile)

    assert made_late is None
    after = state()
    assert after.offers == [(world.slot, world.entry_ids[0], OfferStatus.ACCEPTED)] and after.rdvs == 1
    assert db.session.get(WaitlistSlot, world.slot).status == SlotStatus.TAKEN
    assert db.session.get(WaitlistEntry, world.entry_ids[0]).status == EntryStatus.FULFILLED


@pytest.fixture()
def pg_world(postgres_url, frozen):
    world = make_world(postgres_url)
    yield world
    close(world)


def test_a_hold_written_behind_the_locks_back_wins_and_the_run_goes_on_with_the_next_slot(pg_world):
    """PostgreSQL only: SQLite's write lock, held by the run, would keep the other hold out until it commits. The
    run, stopped just before writing its hold, has checked there was none; another hold on the same slot is then
    committed by a writer that did not take the lock. The unique index refuses the run's hold: it rolls that slot
    back (no offer, no SMS) and offers the next one."""
    world = pg_world
    thursday = free(world, wednesday(10) + timedelta(days=1))

    def held_behind_its_back():
        db.session.add(SlotOffer(slot_id=world.slot, entry_id=world.entry_ids[1], usager_id=world.family_ids[1],
                                 status=OfferStatus.HELD, offered_at=NOW, held_until=NOW + timedelta(minutes=30)))
        db.session.commit()

    made_late = while_stopped_before(world, ("INSERT INTO slot_offers",), offers.reallocate,
                                     meanwhile=held_behind_its_back)

    assert made_late == 1
    after = state()
    assert sorted(after.offers) == sorted([(world.slot, world.entry_ids[1], OfferStatus.HELD),
                                           (thursday, world.entry_ids[0], OfferStatus.HELD)])
    assert after.offer_messages == 1  # the Thursday offer's SMS; none left behind by the refused hold


# --- The family accepting and declining at the same moment ---------------------------------------------------------

@pytest.fixture()
def live_offer(database_url, frozen):
    world = make_world(database_url)
    offer = offers.offer_slot(world.slot, NOW)
    with world.app.test_request_context():
        world.link = f"/o/{offer_token(offer.id)}"
    world.offer = offer.id
    db.session.remove()
    with live_server(world.app) as base:
        world.base = base
        yield world
    close(world)


def answer_form(base: str, link: str) -> tuple[requests.Session, dict]:
    session = requests.Session()
    return session, {"csrf_token": CSRF.search(session.get(f"{base}{link}", timeout=30).text).group(1)}


@pytest.mark.parametrize("first", ["accept", "decline"])
def test_accepting_and_declining_one_offer_at_the_same_moment_gives_one_answer(live_offer, first):
    world = live_offer
    answers = {"accept": "accepter", "decline": "refuser"}
    forms = {what: answer_form(world.base, world.link) for what in answers}

    def answer(what: str):
        session, form = forms[what]
        return session.post(f"{world.base}{world.link}/{answers[what]}", data=form, allow_redirects=False,
                            headers={PARTY_HEADER: what}, timeout=60)

    with HeldStatements(db.engine, ("UPDATE slot_offers",), 2, first=first) as held, ThreadPoolExecutor(2) as pool:
        responses = dict(zip(answers, pool.map(answer, answers)))
    assert held.crossed == 2, "the answers did not meet before their UPDATE"

    second = "decline" if first == "accept" else "accept"
    assert responses[first].status_code == 302, responses[first].text
    assert responses[second].status_code == 409
    after = state()
    if first == "accept":
        assert "Vous avez déjà accepté ce créneau" in responses[second].text
        assert after.offers == [(world.slot, world.entry_ids[0], OfferStatus.ACCEPTED)] and after.rdvs == 1
        assert db.session.get(WaitlistSlot, world.slot).status == SlotStatus.TAKEN
    else:
        assert "Vous avez refusé ce créneau" in responses[second].text
        # Declined at once, so the slot went on to the next family (the decline kicks the engine).
        assert after.offers == [(world.slot, world.entry_ids[0], OfferStatus.DECLINED),
                                (world.slot, world.entry_ids[1], OfferStatus.HELD)] and after.rdvs == 0
        assert db.session.get(WaitlistSlot, world.slot).status == SlotStatus.OPEN
        assert db.session.get(WaitlistEntry, world.entry_ids[0]).status == EntryStatus.ACTIVE
