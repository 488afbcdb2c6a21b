"""The offer engine's rules at their bounds: which family a freed time goes to, when a time counts as taken or too
near, and what a family reads when it answers an offer no longer held. Written against the mutants of
lapins/waitlist/offers.py that the offers room let through (docs/testing.md, « offers »)."""
from __future__ import annotations

import html
import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from lapins.booking import book_rdv, sessions
from lapins.infra.extensions import db
from lapins.models import (
    EntryStatus, MessageStatus, OfferStatus, Rdv, RdvStatus, Role, SlotOffer, SlotStatus, WaitlistSlot,
)
from lapins.notifications import outbox
from lapins.waitlist import entries as waitlist_entries
from lapins.waitlist import offers
from tests.conftest import csrf_token_from
from tests.test_offers import (  # noqa: F401  (clinic, joint and frozen_time are fixtures; frozen_time is autouse)
    NOW, PARIS, WEDNESDAY, answer, cancel, clinic, frozen_time, joint, link_of, offer_sms, offers_made, reread,
    two_families_holding_offers,
)
from tests.test_sessions import new_session, pmi, tuesday  # noqa: F401  (pmi is a fixture)


def wednesday(hour: int, minute: int = 0) -> datetime:
    return datetime.combine(WEDNESDAY, time(hour, minute), PARIS)


def offered_to(entry) -> list[datetime]:
    """The times the engine offered this family from now on, in the order it offered them."""
    return [offer.slot.starts_at for offer in offers_made() if offer.entry_id == entry.id and offer.offered_at >= NOW]


@pytest.fixture()
def colleague(clinic, factories):
    """A second agent of the centre, open at the same hours for the same motif."""
    agent = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=clinic.lieu, first_day=NOW.date(), motifs=[clinic.motif],
                           start_time=time(9), end_time=time(12), weekdays=0b0011111)

    def rdv(usager, day: date = WEDNESDAY, hour: int = 10, minute: int = 0):
        return book_rdv(actor=agent, motif=clinic.motif, agents=[agent], usagers=[usager], lieu=clinic.lieu,
                        starts_at=datetime.combine(day, time(hour, minute), PARIS))

    return type("Colleague", (), dict(agent=agent, rdv=staticmethod(rdv)))


# --- Answering an offer no longer held: the page says exactly why ------------------------------------------------

HEADING = re.compile(r'<h1 class="fr-h3">(.*?)</h1>', re.S)
ALERT = re.compile(r'role="alert"><p>(.*?)</p>', re.S)
EXPIRED = (410, "Proposition expirée", "Le délai pour accepter ce créneau est dépassé : il a pu être proposé à une "
           "autre famille.")
REFUSALS = {
    # The heading of an accepted offer is the page's own (« Rendez-vous confirmé »), whatever the refusal's title.
    OfferStatus.ACCEPTED: (409, "Rendez-vous confirmé", "Vous avez déjà accepté ce créneau : votre rendez-vous est "
                           "enregistré."),
    OfferStatus.DECLINED: (409, "Proposition refusée", "Vous avez refusé ce créneau : il a été proposé à une autre "
                           "famille."),
    OfferStatus.VOID: (409, "Créneau plus disponible", "Ce créneau n'est plus disponible. Vous restez sur la liste "
                       "d'attente."),
    OfferStatus.EXPIRED: EXPIRED,
}


@pytest.mark.parametrize("what", ["accepter", "refuser"])
@pytest.mark.parametrize("state", [*REFUSALS, "the hold ends this very second"])
def test_an_answer_to_an_offer_no_longer_held_is_refused_saying_exactly_why(client, clinic, frozen_time, state, what):
    cancelled = clinic.rdv(clinic.family("Annule"))
    entry = clinic.wait(clinic.family("Attente"))
    cancel(cancelled)
    [offer] = offers_made()
    link = link_of(offer_sms(entry.usager)[0])
    form = {"csrf_token": csrf_token_from(client.get(link).get_data(as_text=True))}  # read while it was open
    if state in REFUSALS:
        offer.status = state
        db.session.commit()
        expected = REFUSALS[state]
    else:
        frozen_time.move_to(offer.held_until)  # held until, not through, that second
        expected = EXPIRED

    response = client.post(f"{link}/{what}", data=form)

    page = html.unescape(response.get_data(as_text=True))
    assert (response.status_code, HEADING.search(page).group(1), ALERT.search(page).group(1)) == expected
    assert reread(offer).status == (state if state in REFUSALS else OfferStatus.HELD)
    assert db.session.query(Rdv).filter(Rdv.status == RdvStatus.UNKNOWN).count() == 0
    assert reread(entry).status == EntryStatus.ACTIVE


# --- Who is offered a freed time ------------------------------------------------------------------------------------

def past_offers(clinic, entry, *offered_at: datetime) -> None:
    """Offers this family was made earlier (and let expire), each for a time of its own since taken."""
    for index, moment in enumerate(offered_at):
        starts_at = datetime.combine(date(2026, 3, 5), time(9 + index), PARIS)
        slot = offers.record_freed(clinic.organisation.id, clinic.motif.id, clinic.lieu.id, [clinic.agent.id],
                                   starts_at, starts_at + timedelta(minutes=30), source_rdv_id=None)
        slot.status = SlotStatus.TAKEN
        db.session.add(SlotOffer(slot=slot, entry=entry, usager_id=entry.usager_id, status=OfferStatus.EXPIRED,
                                 offered_at=moment, held_until=moment + timedelta(minutes=30)))
    db.session.commit()


MIDNIGHT = datetime(2026, 3, 2, tzinfo=PARIS)  # the start of Monday in Paris, 23:00 UTC on Sunday


@pytest.mark.parametrize(("offered_at", "offered_again"), [
    ((MIDNIGHT, MIDNIGHT, MIDNIGHT + timedelta(minutes=30)), False),  # three today, from the local midnight on
    ((MIDNIGHT - timedelta(seconds=1), MIDNIGHT, MIDNIGHT), True),  # one of them yesterday, by a second
])
def test_the_three_offers_a_day_are_counted_from_the_territorys_midnight(clinic, offered_at, offered_again):
    first = clinic.wait(clinic.family("Premiere"), priority=1)
    second = clinic.wait(clinic.family("Seconde", phone="+33622222222"))
    past_offers(clinic, first, *offered_at)

    cancel(clinic.rdv(clinic.family("Annule")))

    offered, passed_over = (first, second) if offered_again else (second, first)
    assert offered_to(offered) == [wednesday(10)] and offered_to(passed_over) == []


def test_the_day_of_the_three_offers_is_the_territorys_day_not_the_servers(clinic, frozen_time):
    """In La Réunion (UTC+4), 02:00 on Monday is still Sunday in UTC: Sunday's three offers no longer count."""
    reunion = ZoneInfo("Indian/Reunion")
    territory = clinic.organisation.territory
    territory.timezone, territory.quiet_hours_start, territory.quiet_hours_end = "Indian/Reunion", time(13), time(14)
    db.session.commit()
    entry = clinic.wait(clinic.family("Attente"))
    sunday = datetime(2026, 3, 1, 15, tzinfo=reunion)
    past_offers(clinic, entry, sunday, sunday, sunday)
    # 02:00 on Monday in La Réunion; the server's own zone UTC (time-machine takes it from a ZoneInfo destination).
    frozen_time.move_to(datetime(2026, 3, 2, 2, tzinfo=reunion).astimezone(ZoneInfo("UTC")))
    starts_at = datetime(2026, 3, 4, 10, tzinfo=reunion)
    offers.record_freed(clinic.organisation.id, clinic.motif.id, clinic.lieu.id, [clinic.agent.id], starts_at,
                        starts_at + timedelta(minutes=30), source_rdv_id=None)

    assert offers.reallocate() == 1
    assert [offer.slot.starts_at for offer in offers_made() if offer.status == OfferStatus.HELD] == [starts_at]


def test_quiet_hours_are_the_territorys_not_the_servers(clinic, frozen_time):
    """09:00 in La Réunion is 05:00 in UTC: the offer leaves, the territory's quiet hours (20:00–08:30) being over."""
    reunion = ZoneInfo("Indian/Reunion")
    clinic.organisation.territory.timezone = "Indian/Reunion"
    db.session.commit()
    entry = clinic.wait(clinic.family("Attente"))
    frozen_time.move_to(datetime(2026, 3, 3, 9, tzinfo=reunion).astimezone(ZoneInfo("UTC")))  # the server in UTC
    starts_at = datetime(2026, 3, 4, 10, tzinfo=reunion)
    offers.record_freed(clinic.organisation.id, clinic.motif.id, clinic.lieu.id, [clinic.agent.id], starts_at,
                        starts_at + timedelta(minutes=30), source_rdv_id=None)

    assert offers.reallocate() == 1
    assert offered_to(entry) == [starts_at] and len(offer_sms(entry.usager)) == 1


def test_a_time_a_family_was_offered_once_is_not_offered_to_it_again(clinic, frozen_time):
    first = clinic.wait(clinic.family("Premiere"), priority=2)
    second = clinic.wait(clinic.family("Seconde"), priority=1)
    third = clinic.wait(clinic.family("Troisieme"))
    cancel(clinic.rdv(clinic.family("Annule")))
    offers.decline(offers_made()[0], NOW)  # the first family says no: the second is offered the time
    frozen_time.shift(timedelta(minutes=30))  # the second lets its hold end

    assert offers.reallocate() == 1

    # Not back to the first family, placed higher: it said no to this very time.
    assert [offered_to(entry) for entry in (first, second, third)] == [[wednesday(10)]] * 3


@pytest.mark.parametrize("same", ["agent", "time"])
def test_a_family_that_said_no_to_one_time_is_offered_the_same_agents_other_times_and_the_same_time_of_others(
        clinic, colleague, same):
    first = clinic.wait(clinic.family("Premiere"), priority=2)
    second = clinic.wait(clinic.family("Seconde"), priority=1)
    cancel(clinic.rdv(clinic.family("Annule")))
    offers.decline(offers_made()[0], NOW)  # the second family now holds the agent's 10:00

    if same == "agent":
        cancel(clinic.rdv(clinic.family("Annule2"), hour=11))
    else:
        cancel(colleague.rdv(clinic.family("Annule2"), hour=10))

    assert offered_to(first) == [wednesday(10), wednesday(11 if same == "agent" else 10)]
    assert offered_to(second) == [wednesday(10)]


def test_a_family_whose_rdv_is_at_the_very_time_freed_is_not_offered_it(clinic, colleague):
    holder = clinic.family("MemeHeure")
    same_time = clinic.wait(holder, rdv=colleague.rdv(holder, hour=10), priority=1)  # with the colleague, at 10:00
    other = clinic.wait(clinic.family("Autre", phone="+33622222222"))

    cancel(clinic.rdv(clinic.family("Annule"), hour=10))

    assert offered_to(same_time) == [] and offered_to(other) == [wednesday(10)]


def test_a_family_waiting_for_another_motif_of_the_centre_is_not_offered_this_one(clinic, factories):
    vaccination = factories.MotifFactory(organisation=clinic.organisation, name="Vaccination", duration_minutes=30)
    elsewhere = factories.WaitlistEntryFactory(usager=clinic.family("AutreMotif"), motif=vaccination,
                                               organisation=clinic.organisation, priority=5)
    entry = clinic.wait(clinic.family("Attente", phone="+33622222222"))

    cancel(clinic.rdv(clinic.family("Annule")))

    assert offered_to(elsewhere) == [] and offered_to(entry) == [wednesday(10)]


def test_a_time_taken_and_freed_again_is_offered_again(client, clinic):
    first = clinic.wait(clinic.family("Premiere"), priority=1)
    second = clinic.wait(clinic.family("Seconde", phone="+33622222222"))
    cancel(clinic.rdv(clinic.family("Annule")))
    assert answer(client, link_of(offer_sms(first.usager)[0]), "accepter").status_code == 302

    cancel(db.session.get(Rdv, offers_made()[0].rdv_id))  # the first family cancels the rdv it took

    assert offered_to(second) == [wednesday(10)]


def test_a_child_and_its_parent_sharing_a_phone_get_one_offer_sms(clinic, factories):
    parent = clinic.family("Hoarau", phone="+33622222222")
    child = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation],
                                    first_name="Maëlys", last_name="Hoarau", responsible=parent,
                                    phone="+33622222222")
    clinic.wait(child)

    cancel(clinic.rdv(clinic.family("Annule")))

    assert len(offer_sms(child)) + len(offer_sms(parent)) == 1


def test_among_families_of_one_priority_the_one_waiting_longest_is_offered_first_whatever_its_row(clinic):
    later = clinic.wait(clinic.family("Recente"), created_at=NOW - timedelta(days=1))  # written first
    longest = clinic.wait(clinic.family("Ancienne", phone="+33622222222"), created_at=NOW - timedelta(days=3))

    cancel(clinic.rdv(clinic.family("Annule")))

    assert offered_to(longest) == [wednesday(10)] and offered_to(later) == []


def test_a_reachable_family_behind_a_page_of_unreachable_ones_is_offered_the_time(clinic):
    """More families than one page of the engine's reading (offers.BEST_ENTRY_PAGE) wait first but cannot be told
    (no mobile, or no SMS consent): the first family that can be is offered the time, not nobody."""
    unreachable = [clinic.wait(clinic.family(f"Injoignable{number}", **({"phone": None} if number % 2 else
                                                                         {"sms_consent": False})),
                               created_at=NOW - timedelta(days=30, minutes=number))
                   for number in range(2 * offers.BEST_ENTRY_PAGE + 1)]  # the reachable one on the third page
    reachable = clinic.wait(clinic.family("Joignable", phone="+33622222222"), created_at=NOW - timedelta(days=1))

    cancel(clinic.rdv(clinic.family("Annule")))

    assert offered_to(reachable) == [wednesday(10)]
    assert all(offered_to(entry) == [] for entry in unreachable)


def test_an_entry_whose_rdv_the_family_cancelled_closes_then_and_a_closed_one_keeps_its_own_state(clinic, factories,
                                                                                                  frozen_time):
    family = clinic.family("Annule")
    own = clinic.rdv(family, day=date(2026, 3, 6), hour=9)
    withdrawn_at = NOW - timedelta(days=1)
    withdrawn = factories.WaitlistEntryFactory(usager=family, motif=clinic.motif, organisation=clinic.organisation,
                                               rdv=own, status=EntryStatus.WITHDRAWN, closed_at=withdrawn_at)
    entry = clinic.wait(family, rdv=own)
    frozen_time.move_to(NOW + timedelta(minutes=5))

    cancel(own)

    assert (reread(entry).status, reread(entry).closed_at) == (EntryStatus.LAPSED, NOW + timedelta(minutes=5))
    withdrawn = reread(withdrawn)
    assert (withdrawn.status, withdrawn.closed_at, withdrawn.rdv_id) == (EntryStatus.WITHDRAWN, withdrawn_at, own.id)


def test_the_freed_slot_is_written_in_the_cancellations_transaction_and_rolled_back_with_it(clinic):
    """free_cancelled never commits: a cancellation that fails after it (a later listener, the commit itself) takes
    the freed slot back with it (had the waiting list committed, the rdv would stay cancelled, its family untold)."""
    rdv = clinic.rdv(clinic.family("Annule"))
    clinic.wait(clinic.family("Attente"))
    rdv.status = RdvStatus.EXCUSED  # the cancellation under way, not committed

    slot = offers.free_cancelled(rdv)
    assert slot is not None and slot.status == SlotStatus.OPEN
    db.session.rollback()  # the cancellation failed

    assert reread(rdv).is_live
    assert db.session.scalars(select(WaitlistSlot)).all() == []


def test_a_freed_time_is_recorded_once_while_open_for_its_agent_and_time_and_never_in_the_last_hours(clinic,
                                                                                                      colleague):
    def freed(starts_at: datetime, agent=clinic.agent):
        return offers.record_freed(clinic.organisation.id, clinic.motif.id, clinic.lieu.id, [agent.id], starts_at,
                                   starts_at + timedelta(minutes=30), source_rdv_id=None)

    bound = NOW + offers._stop_before()
    assert freed(bound) is None  # too near from the stop-before hours on, to the second
    first = freed(bound + timedelta(seconds=1))
    assert first is not None and first.status == SlotStatus.OPEN
    assert freed(bound + timedelta(seconds=1)) is None  # that agent's time, already open
    assert freed(bound + timedelta(seconds=1), agent=colleague.agent) is not None  # another agent's, same time
    assert freed(bound + timedelta(minutes=30)) is not None  # the agent's next time
    first.status = SlotStatus.CLOSED
    db.session.commit()
    assert freed(bound + timedelta(seconds=1)) is not None  # freed again once the first one closed


# --- When a time counts as held, busy or too near ------------------------------------------------------------------

def test_back_to_back_times_of_one_agent_are_offered_each_to_its_family(clinic):
    """A hold keeps the agent's overlapping times from other offers, not the times just before or after it."""
    families = [clinic.wait(clinic.family(name), created_at=NOW - timedelta(days=days))
                for name, days in (("Premiere", 3), ("Seconde", 2), ("Troisieme", 1))]

    for hour, minute in ((10, 30), (10, 0), (11, 0)):  # each freed while the one before is held
        cancel(clinic.rdv(clinic.family(f"Annule{hour}{minute}"), hour=hour, minute=minute))

    assert [offered_to(entry) for entry in families] == [[wednesday(10, 30)], [wednesday(10)], [wednesday(11)]]
    assert [offer.status for offer in offers_made()] == [OfferStatus.HELD] * 3


def test_a_hold_on_a_joint_time_keeps_each_of_its_agents_own_time_from_another_family(clinic, joint, frozen_time):
    """Both freed overnight (no offer leaves in quiet hours), so both are open in the morning: the joint time is
    offered first, and the médecin's own time over it, booked knowingly, is not offered to the next family."""
    joint_rdv = joint.rdv(clinic.family("Annule"))
    solo = book_rdv(actor=joint.doctor, motif=clinic.motif, agents=[joint.doctor], usagers=[clinic.family("Solo")],
                    lieu=clinic.lieu, starts_at=wednesday(10, 15), force=True)
    first = clinic.wait(clinic.family("Premiere"), created_at=NOW - timedelta(days=1))
    second = clinic.wait(clinic.family("Seconde", phone="+33622222222"))
    frozen_time.move_to(datetime(2026, 3, 2, 21, tzinfo=PARIS))
    cancel(joint_rdv)
    cancel(solo)
    frozen_time.move_to(datetime(2026, 3, 3, 9, tzinfo=PARIS))

    assert offers.reallocate() == 1
    [held] = offers_made()
    assert held.entry_id == first.id and {agent.id for agent in held.slot.agents} == {clinic.agent.id, joint.doctor.id}
    assert offered_to(second) == [] and not offer_sms(second.usager)


def test_a_sessions_place_given_to_a_family_at_the_desk_meanwhile_is_closed_not_offered(pmi, frozen_time):
    """A place opened overnight (no offer leaves in quiet hours) and given by an agent before the morning run: the
    session is full, so the family waiting for it is offered nothing."""
    session = new_session(pmi, capacity=1, starts=[tuesday(week=1)])
    sessions.add_participant(actor=pmi.agent, session=session, usagers=[pmi.families[0][0]])
    entry = waitlist_entries.add_for_session(pmi.agent, pmi.families[1][0], session)
    frozen_time.move_to(datetime(2026, 3, 2, 21, tzinfo=PARIS))
    sessions.set_capacity(actor=pmi.agent, session=session, capacity=2)  # a place for the waiting family, held back
    sessions.add_participant(actor=pmi.agent, session=session, usagers=[pmi.families[2][0]])  # given at the desk
    frozen_time.move_to(datetime(2026, 3, 3, 8, tzinfo=timezone.utc))

    assert offers.reallocate() == 0
    assert offered_to(entry) == [] and sessions.free_places(session) == 0


def test_a_time_between_two_rdvs_of_its_agent_is_still_offered(clinic):
    cancel(clinic.rdv(clinic.family("Annule"), hour=10))  # nobody waits yet: the time stays open
    clinic.rdv(clinic.family("Avant"), hour=9, minute=30)  # the agent's rdvs just before and just after it
    clinic.rdv(clinic.family("Apres"), hour=10, minute=30)
    entry = clinic.wait(clinic.family("Attente"))

    assert offers.reallocate() == 1
    assert offered_to(entry) == [wednesday(10)]


def test_two_agents_times_freed_at_the_same_hour_are_two_offers(clinic, colleague):
    first = clinic.wait(clinic.family("Premiere"), priority=1)
    second = clinic.wait(clinic.family("Seconde"))

    cancel(clinic.rdv(clinic.family("Annule"), hour=10))
    cancel(colleague.rdv(clinic.family("Annule2"), hour=10))

    assert offered_to(first) == [wednesday(10)] and offered_to(second) == [wednesday(10)]
    assert {offer.slot.agent_id for offer in offers_made()} == {clinic.agent.id, colleague.agent.id}


def test_a_time_freed_earlier_is_no_longer_offered_once_it_is_the_stop_before_hours_away(clinic, frozen_time):
    # Monday 11:30, freed at 09:00 while nobody waits; a family asks at 09:30, exactly two hours before.
    cancel(clinic.rdv(clinic.family("Annule"), day=NOW.date(), hour=11, minute=30))
    frozen_time.shift(timedelta(minutes=30))
    entry = clinic.wait(clinic.family("Attente"))

    assert offers.reallocate() == 0
    assert offered_to(entry) == [] and not offer_sms(entry.usager)


def test_with_one_family_waiting_the_earliest_time_freed_is_offered_first(clinic):
    cancel(clinic.rdv(clinic.family("Jeudi"), day=date(2026, 3, 5), hour=10))  # freed first, nobody waiting
    cancel(clinic.rdv(clinic.family("Mercredi"), hour=10))
    entry = clinic.wait(clinic.family("Attente"))

    assert offers.reallocate() == 1
    assert offered_to(entry) == [wednesday(10)]


def test_an_entry_lapses_at_the_very_second_its_rdv_starts(clinic, frozen_time):
    family = clinic.family("Passe")
    entry = clinic.wait(family, rdv=clinic.rdv(family, day=date(2026, 3, 3), hour=9))
    frozen_time.move_to(datetime(2026, 3, 3, 9, tzinfo=PARIS))

    offers.reallocate()

    lapsed = reread(entry)
    assert (lapsed.status, lapsed.closed_at) == (EntryStatus.LAPSED, datetime(2026, 3, 3, 8, tzinfo=timezone.utc))


# --- What the beat's run leaves alone ------------------------------------------------------------------------------

def test_the_end_of_a_hold_leaves_an_answered_offer_as_it_was_answered(client, clinic, frozen_time):
    link, declined, accepted = two_families_holding_offers(clinic)
    assert answer(client, link, "refuser").status_code == 302
    second_link = link_of(offer_sms(accepted.entry.usager)[0])
    assert answer(client, second_link, "accepter").status_code == 302
    frozen_time.shift(timedelta(minutes=31))  # both holds' time is over

    offers.reallocate()

    assert (reread(declined).status, reread(accepted).status) == (OfferStatus.DECLINED, OfferStatus.ACCEPTED)
    assert "Rendez-vous confirmé" in client.get(second_link).get_data(as_text=True)


def test_an_entry_fulfilled_by_moving_its_rdv_stays_fulfilled_when_that_rdv_comes(client, clinic, frozen_time):
    mover = clinic.family("Avance")
    entry = clinic.wait(mover, rdv=clinic.rdv(mover, day=date(2026, 3, 6), hour=9))
    cancel(clinic.rdv(clinic.family("Annule"), hour=10))
    assert answer(client, link_of(offer_sms(mover)[0]), "accepter").status_code == 302
    frozen_time.move_to(datetime(2026, 3, 4, 10, 5, tzinfo=PARIS))  # the rdv, moved to Wednesday 10:00, has begun

    offers.reallocate()

    assert (reread(entry).status, reread(entry).closed_at) == (EntryStatus.FULFILLED, NOW)


def test_an_offer_sms_still_waiting_when_its_hold_ends_is_dropped_not_sent(app, clinic, frozen_time, monkeypatch):
    """The beat made the offer but its SMS could not leave within the hold (the workers behind a backlog, the
    operator failing): sent afterwards, it would send the family to a time that may be another family's by then."""
    monkeypatch.setitem(app.extensions["celery"].conf, "task_always_eager", False)  # what is queued waits
    waiting = clinic.wait(clinic.family("Attend"))
    cancel(clinic.rdv(clinic.family("Annule"), hour=10))
    assert offers.reallocate() == 1  # the beat's run: the offer and its SMS committed, nothing sent yet
    [sms] = offer_sms(waiting.usager)
    assert sms.status == MessageStatus.PENDING
    frozen_time.shift(timedelta(minutes=30))  # the hold is over when a worker reaches the SMS

    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    for ids in handed:
        outbox.send_batch(ids)

    db.session.refresh(sms)
    assert (sms.status, sms.sent_at) == (MessageStatus.SKIPPED, None)


def test_an_offer_sms_leaves_ahead_of_the_messages_waiting_with_it(app, clinic, frozen_time, monkeypatch):
    """Its family has half an hour to answer: behind a backlog (the week's confirmations, here not yet sent), the
    offer's SMS is in the first batch handed to the workers, not the last."""
    monkeypatch.setitem(app.extensions["celery"].conf, "task_always_eager", False)  # what is queued waits
    monkeypatch.setitem(app.config, "OUTBOX_BATCH_SIZE", 2)
    waiting = clinic.wait(clinic.family("Attend", phone="+33610000000"))
    for number, (hour, minute) in enumerate([(9, 0), (9, 30), (10, 30), (11, 0), (11, 30)], start=1):
        clinic.rdv(clinic.family(f"Semaine{'abcde'[number - 1]}", phone=f"+3361000000{number}"), hour=hour,
                   minute=minute)
    cancel(clinic.rdv(clinic.family("Annule", phone="+33610000009"), hour=10))
    assert offers.reallocate() == 1
    [sms] = offer_sms(waiting.usager)

    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)

    assert len(handed) >= 4 and sms.id in handed[0]


@pytest.mark.parametrize("meanwhile", ["cancelled", "started"])
def test_a_family_whose_own_rdv_was_cancelled_or_has_begun_gets_a_new_rdv_when_it_accepts(
        client, clinic, frozen_time, meanwhile):
    """The family waited for an earlier time than its rdv. If that rdv is cancelled, or begins (this very second),
    before the family accepts, accepting books the offered time as a new rdv: it does not move an rdv that is gone."""
    family = clinic.family("Avance")
    own = clinic.rdv(family, day=date(2026, 3, 6), hour=9)
    clinic.wait(family, rdv=own)
    cancel(clinic.rdv(clinic.family("Annule"), hour=10))
    link = link_of(offer_sms(family)[0])
    form = {"csrf_token": csrf_token_from(client.get(link).get_data(as_text=True))}
    if meanwhile == "cancelled":
        cancel(own)
    else:
        own.starts_at = NOW  # an agent made it start now (the hold is not over yet)
        db.session.commit()

    assert client.post(f"{link}/accepter", data=form).status_code == 302

    rdvs = db.session.execute(select(Rdv.id, Rdv.starts_at, Rdv.status).where(Rdv.id != own.id)
                              .where(Rdv.status.notin_([RdvStatus.EXCUSED]))).all()
    assert [(starts_at, status) for _, starts_at, status in rdvs] == [(wednesday(10), RdvStatus.UNKNOWN)]
    kept = reread(own)
    assert kept.starts_at == (datetime(2026, 3, 6, 9, tzinfo=PARIS) if meanwhile == "cancelled" else NOW)


def test_an_accepted_time_at_another_lieu_moves_the_rdv_there_and_a_longer_time_is_booked_whole(
        client, clinic, factories, frozen_time):
    """The freed time is taken as it was freed: its lieu (a family waiting « any lieu » whose rdv is elsewhere) and
    its length (an rdv its agent had made 45 minutes long, on a 30-minute motif)."""
    factories.PlageFactory(agent=clinic.agent, lieu=clinic.other_lieu, first_day=NOW.date(), motifs=[clinic.motif],
                           start_time=time(14), end_time=time(17), weekdays=0b0011111)
    mover = clinic.family("Avance")
    own = clinic.rdv(mover, day=date(2026, 3, 6), hour=9)
    clinic.wait(mover, rdv=own)
    freed = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.family("Annule")],
                     lieu=clinic.other_lieu, starts_at=wednesday(14), ends_at=wednesday(14, 45))
    cancel(freed)
    assert answer(client, link_of(offer_sms(mover)[0]), "accepter").status_code == 302
    moved = reread(own)
    assert (moved.starts_at, moved.ends_at, moved.lieu_id) == (wednesday(14), wednesday(14, 45), clinic.other_lieu.id)

    newcomer = clinic.family("Nouvelle")
    clinic.wait(newcomer)
    cancel(book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.family("Annule2")],
                    lieu=clinic.lieu, starts_at=wednesday(10), ends_at=wednesday(10, 45)))
    assert answer(client, link_of(offer_sms(newcomer)[0]), "accepter").status_code == 302
    booked = db.session.execute(select(Rdv.starts_at, Rdv.ends_at)
                                .where(Rdv.status == RdvStatus.UNKNOWN, Rdv.starts_at == wednesday(10))).all()
    assert booked == [(wednesday(10), wednesday(10, 45))]


def test_a_time_an_agent_gave_away_while_it_was_offered_is_refused_saying_so_and_the_family_keeps_waiting(
        client, clinic, frozen_time):
    entry = clinic.wait(clinic.family("Attente"))
    cancel(clinic.rdv(clinic.family("Annule"), hour=10))
    link = link_of(offer_sms(entry.usager)[0])
    form = {"csrf_token": csrf_token_from(client.get(link).get_data(as_text=True))}
    clinic.rdv(clinic.family("Guichet"), hour=10)  # an agent books the time for a family at the desk meanwhile

    response = client.post(f"{link}/accepter", data=form)

    page = html.unescape(response.get_data(as_text=True))
    assert (response.status_code, HEADING.search(page).group(1), ALERT.search(page).group(1)) == (
        409, "Créneau plus disponible", "Ce créneau vient d'être attribué : il n'est plus disponible. Vous restez sur "
        "la liste d'attente.")
    assert reread(offers_made()[0]).status == OfferStatus.VOID and reread(entry).status == EntryStatus.ACTIVE
