"""A family's move held at its bounds (issue 27): the exact refusals it reads, the rdv's lieu and length, its own
agent and the agent a page named, « taken » and « not offered » at the picker's first and last minute, the guardian
who moved, the picker's kept pages following every agenda they show, and the move's attempts against bookings made
between its read and its write. Written against the identity room's survivors."""
from __future__ import annotations

import html
import re
from contextlib import contextmanager
from datetime import date, time, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import event, select

from lapins import create_app
from lapins.booking import BookingError, book_rdv
from lapins.family import services
from lapins.infra.extensions import db as _db
from lapins.models import Agent, Channel, Lieu, Message, MessageKind, Motif, Role, Territory
from lapins.notifications.links import rdv_token
from lapins.slots import picker
from tests import factories as world_factories
from tests.test_family_moves import (  # noqa: F401  (clinic and frozen_time are fixtures; frozen_time is autouse)
    NOW, STARTS_AT, assert_unchanged, check_identity, clinic, form_fields, frozen_time, local, make_clinic, move_to,
    times_offered,
)

TAKEN = "Ce créneau vient d'être pris par une autre famille : choisissez-en un autre."
NOT_OFFERED = ("Ce créneau n'est pas proposé (il est passé, trop proche ou trop lointain) : choisissez-en un "
               "autre.")
FORBIDDEN = "Ce type de rendez-vous ne peut pas être déplacé en ligne."
INSTANT = "%Y-%m-%dT%H:%MZ"



@pytest.fixture()
def own_app(database_url):
    """The app over a database of the test's own (a SQLite file, then PostgreSQL): what is booked meanwhile is
    committed on a connection of its own, as another request's booking would be."""
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url)
    with app.app_context():
        yield app
        _db.session.remove()
        _db.engine.dispose()


def alerts(response) -> list[str]:
    """The text of each alert of a page, whole: what the family reads in the red or orange box."""
    return [html.unescape(found) for found in re.findall(r'role="alert"><p>(.*?)</p></div>',
                                                          response.get_data(as_text=True), re.S)]


def confirmed_form(client, url: str) -> dict[str, str]:
    """The form of the first time the picker offers, as its confirmation page gives it."""
    page = client.get(f"{url}/changer").get_data(as_text=True)
    return form_fields(client.get(times_offered(page)[0][1]).get_data(as_text=True))


def offered(rdv) -> set:
    """The times the picker's first page offers for this rdv (lapins.family.moves renders them, kept per stamps)."""
    shown = picker.page(services.picker_scope(rdv, NOW))
    return {choice.starts_at for day in shown.days for choice in day.choices}


def colleague_of(clinic, factories, day: date, start: time, end: time):
    """Another agent of the clinic, seeing families of the same motif at the same lieu on `day` only."""
    colleague = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=colleague, lieu=clinic.lieu, first_day=day, last_day=day, motifs=[clinic.motif],
                           start_time=start, end_time=end, weekdays=0b1111111)
    return colleague


def book_other_family(clinic, factories, agent, starts_at):
    other = factories.UsagerFactory(territory=clinic.territory)
    return book_rdv(actor=agent, motif=clinic.motif, agents=[agent], usagers=[other], lieu=clinic.lieu,
                    starts_at=starts_at)


# --- What the family reads -------------------------------------------------------------------------------------------

def test_a_family_reads_exactly_why_the_time_it_chose_is_refused(client, clinic, db, factories):
    check_identity(client, clinic.url)
    fields = confirmed_form(client, clinic.url)
    book_other_family(clinic, factories, clinic.agent, local(20, 12))  # the time the form holds, taken meanwhile
    taken = client.post(f"{clinic.url}/changer", data=fields)
    assert taken.status_code == 409 and alerts(taken) == [TAKEN]
    beyond = client.post(f"{clinic.url}/changer", data=fields | {"debut": "2027-02-01T06:00Z"})
    assert beyond.status_code == 422 and alerts(beyond) == [NOT_OFFERED]
    assert_unchanged(db, clinic)


def test_a_move_the_motif_forbids_is_refused_with_its_reason(client, clinic, db):
    check_identity(client, clinic.url)
    fields = confirmed_form(client, clinic.url)
    clinic.motif.family_moves_max = 0
    db.session.commit()
    refused = client.post(f"{clinic.url}/changer", data=fields)
    assert refused.status_code == 409 and alerts(refused) == [FORBIDDEN]
    with pytest.raises(BookingError) as refusal:
        services.move_from_link(clinic.rdv, local(22, 14, 30), None, 0, NOW)
    assert refusal.value.message == FORBIDDEN and not refusal.value.can_force
    assert_unchanged(db, clinic)


def test_the_pickers_first_minute_counts_as_taken_and_its_end_as_not_offered(client, clinic, db, factories):
    scope = services.picker_scope(clinic.rdv, NOW)
    # The motif's 24 h after now (Tuesday 12:00 in La Réunion) up to its 8 weeks, both already on the 5-minute grid.
    assert (scope.start, scope.end) == (NOW + timedelta(hours=24), NOW + timedelta(weeks=8))
    assert picker.choice_at(scope, scope.end - timedelta(minutes=30)) is not None  # the last time offered
    book_other_family(clinic, factories, clinic.agent, scope.start)

    for starts_at, taken, sentence in ((scope.start, True, TAKEN), (scope.end, False, NOT_OFFERED)):
        with pytest.raises(services.SlotUnavailable) as refusal:
            services.move_from_link(clinic.rdv, starts_at, None, 0, NOW)
        assert (refusal.value.taken, refusal.value.message) == (taken, sentence)

    check_identity(client, clinic.url)
    fields = confirmed_form(client, clinic.url)
    first = client.post(f"{clinic.url}/changer", data=fields | {"debut": scope.start.strftime(INSTANT)})
    assert first.status_code == 409 and alerts(first) == [TAKEN]
    last = client.post(f"{clinic.url}/changer", data=fields | {"debut": scope.end.strftime(INSTANT)})
    assert last.status_code == 422 and alerts(last) == [NOT_OFFERED]
    assert_unchanged(db, clinic)


# --- Where and with whom ---------------------------------------------------------------------------------------------

def test_the_picker_keeps_the_rdvs_lieu_though_its_agent_sees_families_elsewhere(client, clinic, db, factories):
    elsewhere = factories.LieuFactory(organisation=clinic.organisation, name="Antenne de Sainte-Clotilde")
    factories.PlageFactory(agent=clinic.agent, lieu=elsewhere, first_day=date(2026, 10, 22),
                           last_day=date(2026, 10, 22), motifs=[clinic.motif], start_time=time(17),
                           end_time=time(18), weekdays=0b1111111)
    evening = local(22, 17)  # free, but at the other lieu
    assert picker.choice_at(services.picker_scope(clinic.rdv, NOW), evening) is None
    assert local(22, 16, 30) in offered(clinic.rdv) and evening not in offered(clinic.rdv)

    check_identity(client, clinic.url)
    labels = [label for label, _ in times_offered(client.get(f"{clinic.url}/changer").get_data(as_text=True))]
    assert "jeudi 22 octobre 2026 à 16h30" in labels and "jeudi 22 octobre 2026 à 17h00" not in labels
    confirm = client.get(f"{clinic.url}/changer/confirmer?debut=2026-10-22T13:00Z&agent={clinic.agent.id}")
    assert confirm.status_code == 409 and alerts(confirm) == [TAKEN]
    fields = confirmed_form(client, clinic.url) | {"debut": "2026-10-22T13:00Z"}
    assert client.post(f"{clinic.url}/changer", data=fields).status_code == 409
    assert_unchanged(db, clinic)


def test_with_any_agent_of_the_lieu_the_family_keeps_its_own_agent_when_free(client, clinic, db, factories):
    # Its own agent joined after the colleague (a higher id): it comes first because it is the family's.
    own = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=own, lieu=clinic.lieu, first_day=date(2026, 1, 1), motifs=[clinic.motif],
                           start_time=time(8), end_time=time(17), weekdays=0b1111111)
    rdv = book_rdv(actor=own, motif=clinic.motif, agents=[own], usagers=[clinic.child], lieu=clinic.lieu,
                   starts_at=local(23, 11))
    clinic.territory.family_moves_any_agent = True
    db.session.commit()
    url = f"/r/{rdv_token(rdv.id)}"
    check_identity(client, url)
    moved, fields = move_to(client, url, "jeudi 22 octobre 2026 à 14h30")  # both free then
    assert moved.status_code == 302 and fields["agent"] == str(own.id)
    db.session.expire_all()
    assert rdv.agents == [own] and rdv.starts_at == local(22, 14, 30)


def test_with_any_agent_the_agent_named_with_the_time_is_booked_while_free(clinic, db, factories):
    colleague = colleague_of(clinic, factories, date(2026, 10, 22), time(14), time(16))
    clinic.territory.family_moves_any_agent = True
    db.session.commit()
    moved = services.move_from_link(clinic.rdv, local(22, 14, 30), None, 0, NOW)
    assert moved.agents == [clinic.agent]  # none named: the family's own agent, free then
    moved = services.move_from_link(clinic.rdv, local(22, 15), colleague.id, 1, NOW)
    assert moved.agents == [colleague] and moved.starts_at == local(22, 15)  # both free: the one the page named


def test_an_rdv_longer_than_its_motif_keeps_its_length_and_is_offered_only_times_it_fits(client, clinic, db,
                                                                                        factories):
    # The agent gave this family an hour for a 30-minute motif (twins, an interpreter): a move keeps the hour, so the
    # picker offers only the times an hour fits in, and never a time it would shorten or that overlaps the next rdv.
    rdv = book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.child],
                   lieu=clinic.lieu, starts_at=local(23, 14), ends_at=local(23, 15))
    book_other_family(clinic, factories, clinic.agent, local(22, 15))  # 15:00 to 15:30
    url = f"/r/{rdv_token(rdv.id)}"
    check_identity(client, url)
    thursday = [label.rsplit(" à ", 1)[1] for label, _ in times_offered(client.get(f"{url}/changer").get_data(
        as_text=True)) if label.startswith("jeudi 22 octobre")]
    assert thursday == ["08h00", "09h00", "10h00", "11h00", "12h00", "13h00", "14h00", "15h30"]
    moved, _ = move_to(client, url, "jeudi 22 octobre 2026 à 15h30")
    assert moved.status_code == 302
    db.session.expire_all()
    assert (rdv.starts_at, rdv.ends_at) == (local(22, 15, 30), local(22, 16, 30))
    with pytest.raises(services.SlotUnavailable) as refusal:  # an hour from 14:30 would overlap the 15:00 rdv
        services.move_from_link(rdv, local(22, 14, 30), None, rdv.revision, NOW)
    assert refusal.value.taken


# --- The guardian who moved ------------------------------------------------------------------------------------------

def test_a_guardian_moving_on_their_own_link_is_recorded_and_the_other_is_told_once(clinic, db, factories):
    father = factories.UsagerFactory(territory=clinic.territory, first_name="Jean", last_name="Hoarau",
                                     phone="+262692654321", sms_consent=True, email="jean.hoarau@example.fr",
                                     email_consent=True)
    clinic.child.second_responsible = father
    db.session.commit()
    services.move_from_link(clinic.rdv, local(22, 14, 30), None, 0, NOW, guardian_id=clinic.parent.id)
    db.session.expire_all()
    assert clinic.rdv.link_actor_id == clinic.parent.id
    told = db.session.scalars(select(Message).where(Message.rdv_id == clinic.rdv.id,
                                                    Message.kind == MessageKind.CHANGED)).all()
    # Who moved it gets the confirmation on every channel; the other guardian one notice, on his first channel.
    assert sorted((m.usager_id, m.channel) for m in told) == sorted([
        (clinic.parent.id, Channel.SMS), (clinic.parent.id, Channel.EMAIL), (father.id, Channel.SMS)])


# --- Kept pages follow every agenda they show ------------------------------------------------------------------------

def test_the_times_offered_follow_the_agents_own_agenda(clinic, db, factories):
    assert local(22, 14, 30) in offered(clinic.rdv)
    stamp = clinic.territory.agenda_stamp
    factories.AbsenceFactory(agent=clinic.agent, first_day=date(2026, 10, 22), start_time=time(14),
                             end_time=time(15))
    db.session.expire_all()
    assert clinic.territory.agenda_stamp == stamp  # only the agent's own stamp is new
    assert local(22, 14, 30) not in offered(clinic.rdv) and local(22, 15) in offered(clinic.rdv)


def test_with_any_agent_the_times_offered_follow_each_colleagues_agenda(client, clinic, db, factories):
    colleague = colleague_of(clinic, factories, date(2026, 10, 21), time(8), time(9))
    clinic.territory.family_moves_any_agent = True
    db.session.commit()
    check_identity(client, clinic.url)
    client.get(clinic.url)  # the page after the check: no message left for the next one

    def labels() -> list[str]:
        return [label for label, _ in times_offered(client.get(f"{clinic.url}/changer").get_data(as_text=True))]

    assert "mercredi 21 octobre 2026 à 08h30" in labels() and local(21, 8, 30) in offered(clinic.rdv)
    stamp = clinic.territory.agenda_stamp
    factories.AbsenceFactory(agent=colleague, first_day=date(2026, 10, 21), start_time=time(8), end_time=time(9))
    db.session.expire_all()
    assert clinic.territory.agenda_stamp == stamp  # only the colleague's own stamp is new
    assert "mercredi 21 octobre 2026 à 08h30" not in labels() and local(21, 8, 30) not in offered(clinic.rdv)


# --- Booked meanwhile: the move tries the next free agent, up to MOVE_ATTEMPTS times --------------------------------

@contextmanager
def booked_before_each_attempt(app, bookings):
    """Before each attempt of a move writes (its agents' lock, or the guardian it records: after its times were read),
    the next of `bookings` is made and committed on a connection of its own, as another family's move or an agent's
    booking of that very minute would be. Yields `left`, the bookings not made, and `failed`, the attempts rolled
    back: a test asserts both, so that it fails, rather than passes quietly, when the move did not race as staged."""
    race = SimpleNamespace(left=list(bookings), failed=0)
    state = {"armed": True, "inside": False}

    def before(_connection, _cursor, statement, *_args) -> None:
        if state["inside"] or not state["armed"] or not race.left:
            return
        if not statement.lstrip().upper().startswith(("BEGIN IMMEDIATE", "UPDATE", "INSERT")):
            return
        state["armed"], state["inside"] = False, True
        try:
            with app.app_context():
                race.left.pop(0)()
                _db.session.remove()
        finally:
            state["inside"] = False

    def rolled_back(_connection) -> None:
        if not state["inside"]:
            race.failed += 1
            state["armed"] = True  # the next attempt reads again, then writes

    event.listen(_db.engine, "before_cursor_execute", before)
    event.listen(_db.engine, "rollback", rolled_back)
    try:
        yield race
    finally:
        event.remove(_db.engine, "before_cursor_execute", before)
        event.remove(_db.engine, "rollback", rolled_back)


def any_agent_clinic(factories, colleagues: int):
    """The clinic, its territory letting families move to any agent of the lieu, and `colleagues` more agents free
    on Thursday 22 from 14:00 to 15:00 as the family's own agent is."""
    clinic = make_clinic(factories)
    clinic.colleagues = [colleague_of(clinic, factories, date(2026, 10, 22), time(14), time(15))
                         for _ in range(colleagues)]
    clinic.territory.family_moves_any_agent = True
    _db.session.commit()
    return clinic


def booking_of(clinic, agent_id: int, starts_at):
    """Another family booked with this agent at that time, in the session of the app context it runs in."""
    def book() -> None:
        agent = _db.session.get(Agent, agent_id)
        other = world_factories.UsagerFactory(territory=_db.session.get(Territory, clinic.territory.id))
        book_rdv(actor=agent, motif=_db.session.get(Motif, clinic.motif.id), agents=[agent], usagers=[other],
                 lieu=_db.session.get(Lieu, clinic.lieu.id), starts_at=starts_at)
    return book


def test_a_time_taken_from_its_agent_meanwhile_goes_to_the_next_free_one_and_records_the_guardian(own_app):
    clinic = any_agent_clinic(world_factories, colleagues=1)
    ids = [clinic.agent.id, clinic.colleagues[0].id]
    with booked_before_each_attempt(own_app, [booking_of(clinic, ids[0], local(22, 14, 30))]) as race:
        moved = services.move_from_link(clinic.rdv, local(22, 14, 30), ids[0], 0, NOW, guardian_id=clinic.parent.id)
    # The family's own agent was booked at that minute once the move had read it free: its first attempt failed.
    assert (race.left, race.failed) == ([], 1)
    _db.session.expire_all()
    assert [agent.id for agent in moved.agents] == [ids[1]] and moved.starts_at == local(22, 14, 30)
    # Recorded again after the first attempt's rollback: the guardian who moved gets the confirmation everywhere.
    assert moved.link_actor_id == clinic.parent.id


def test_a_time_taken_from_every_free_agent_meanwhile_is_refused_as_taken(own_app):
    clinic = any_agent_clinic(world_factories, colleagues=services.MOVE_ATTEMPTS - 1)
    ids = [clinic.agent.id] + [colleague.id for colleague in clinic.colleagues]
    with booked_before_each_attempt(own_app, [booking_of(clinic, agent_id, local(22, 14, 30))
                                              for agent_id in ids]) as race:
        with pytest.raises(services.SlotUnavailable) as refusal:
            services.move_from_link(clinic.rdv, local(22, 14, 30), None, 0, NOW)
    # Each attempt lost its agent: the time was free when read, taken when written.
    assert (race.left, race.failed) == ([], services.MOVE_ATTEMPTS)
    assert (refusal.value.taken, refusal.value.message) == (True, TAKEN)
    _db.session.expire_all()
    assert clinic.rdv.starts_at == STARTS_AT and clinic.rdv.revision == 0
