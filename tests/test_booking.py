"""Booking rules: an agent is never booked twice unless someone explicitly, and visibly, decides so."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from lapins.booking import BookingError, book_rdv, cancel_rdv, move_rdv, set_outcome
from lapins.models import LocationType, RdvStatus, Role

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # Monday 2 March 2026, 08:00 in Paris


def paris(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS).astimezone(timezone.utc)


@pytest.fixture()
def clinic(factories):
    """A PMI centre where one puéricultrice consults Monday to Friday, 09:00–12:00."""
    with time_machine.travel(NOW, tick=False):
        organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris")
        lieu = factories.LieuFactory(organisation=organisation)
        motif = factories.MotifFactory(organisation=organisation, duration_minutes=30)
        agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
        colleague = factories.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY)
        plage = factories.PlageFactory(agent=agent, lieu=lieu, first_day=NOW.date(), motifs=[motif])
        usager = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation])
    return type("Clinic", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent,
                                   colleague=colleague, plage=plage, usager=usager))


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


def book(clinic, starts_at, **kwargs):
    options = dict(actor=clinic.colleague, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.usager],
                   starts_at=starts_at, lieu=clinic.lieu)
    options.update(kwargs)
    return book_rdv(**options)


def test_booking_inside_an_opening_slot_creates_a_live_rdv_of_the_motif_duration(clinic):
    rdv = book(clinic, paris(3, 9, 30))
    assert rdv.id is not None and rdv.status == RdvStatus.UNKNOWN
    assert rdv.ends_at - rdv.starts_at == timedelta(minutes=30)
    assert rdv.agents == [clinic.agent] and rdv.forced_by_id is None
    assert rdv.created_by_id == clinic.colleague.id


def test_an_agent_cannot_be_booked_twice_for_overlapping_times(clinic, db):
    book(clinic, paris(3, 9, 30))
    other = clinic.usager
    with pytest.raises(BookingError) as refused:
        book(clinic, paris(3, 9, 45), usagers=[other])
    assert "a déjà un rendez-vous de 09h30 à 10h00" in refused.value.message
    assert refused.value.can_force
    from lapins.models import Rdv

    assert db.session.query(Rdv).count() == 1


def test_back_to_back_rdvs_do_not_conflict(clinic):
    book(clinic, paris(3, 9, 0))
    assert book(clinic, paris(3, 9, 30)).id


def test_an_explicit_override_books_over_a_conflict_and_records_who_decided(clinic):
    book(clinic, paris(3, 9, 30))
    forced = book(clinic, paris(3, 9, 30), force=True)
    assert forced.forced_by_id == clinic.colleague.id


def test_booking_outside_opening_hours_is_refused_with_a_clear_message(clinic):
    with pytest.raises(BookingError) as refused:
        book(clinic, paris(3, 14, 0))
    assert "en dehors des plages d'ouverture" in refused.value.message


def test_cancelled_rdv_frees_its_slot_at_once(clinic):
    rdv = book(clinic, paris(3, 10, 0))
    cancel_rdv(actor=clinic.colleague, rdv=rdv, status=RdvStatus.EXCUSED, reason="Enfant malade")
    assert rdv.cancelled_by_id == clinic.colleague.id and rdv.cancel_reason == "Enfant malade"
    assert all(link.live is False for link in rdv.agent_links)
    assert book(clinic, paris(3, 10, 0)).id


def test_cancelling_twice_is_refused(clinic):
    rdv = book(clinic, paris(3, 10, 0))
    cancel_rdv(actor=clinic.colleague, rdv=rdv, status=RdvStatus.REVOKED, reason=None)
    with pytest.raises(BookingError, match="déjà annulé"):
        cancel_rdv(actor=clinic.colleague, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)


def test_moving_an_rdv_keeps_its_duration_and_checks_the_new_time(clinic):
    first = book(clinic, paris(3, 9, 0))
    book(clinic, paris(3, 11, 0))
    moved = move_rdv(actor=clinic.colleague, rdv=first, starts_at=paris(3, 10, 0))
    assert (moved.starts_at, moved.ends_at) == (paris(3, 10, 0), paris(3, 10, 30))
    assert moved.agent_links[0].starts_at == paris(3, 10, 0)
    with pytest.raises(BookingError, match="a déjà un rendez-vous"):
        move_rdv(actor=clinic.colleague, rdv=first, starts_at=paris(3, 11, 15))
    assert first.starts_at == paris(3, 10, 0)


def test_an_rdv_can_be_moved_onto_its_own_previous_time(clinic):
    rdv = book(clinic, paris(3, 9, 0))
    assert move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 15)).starts_at == paris(3, 9, 15)


def test_a_future_rdv_cannot_be_marked_seen(clinic):
    rdv = book(clinic, paris(3, 9, 0))
    with pytest.raises(BookingError, match="pas encore commencé"):
        set_outcome(actor=clinic.colleague, rdv=rdv, status=RdvStatus.SEEN)


def test_a_past_rdv_is_marked_seen_or_noshow(clinic):
    rdv = book(clinic, paris(3, 9, 0))
    with time_machine.travel(paris(3, 12, 0), tick=False):
        assert set_outcome(actor=clinic.colleague, rdv=rdv, status=RdvStatus.NOSHOW).status == RdvStatus.NOSHOW


def test_an_on_site_motif_needs_a_lieu(clinic):
    assert clinic.motif.location_type == LocationType.ON_SITE
    with pytest.raises(BookingError, match="Choisissez le lieu"):
        book(clinic, paris(3, 9, 0), lieu=None)


def test_end_before_start_is_refused(clinic):
    with pytest.raises(BookingError, match="après son début"):
        book(clinic, paris(3, 9, 0), ends_at=paris(3, 8, 0))


def test_an_inactive_motif_cannot_be_booked(clinic, db):
    clinic.motif.active = False
    db.session.commit()
    with pytest.raises(BookingError, match="plus proposé"):
        book(clinic, paris(3, 9, 0))


def test_a_dst_change_does_not_move_a_booked_local_time(clinic):
    """Monday 30 March 2026, the day after the spring change: 09:00 local is 07:00 UTC, not 08:00."""
    rdv = book(clinic, paris(30, 9, 0))
    assert rdv.starts_at == datetime(2026, 3, 30, 7, 0, tzinfo=timezone.utc)
    assert rdv.starts_at.astimezone(PARIS).time() == time(9, 0)


# --- Restoring a cancelled rdv books its time again ------------------------------------------------------------------

def test_restoring_a_cancelled_rdv_onto_a_time_taken_meanwhile_is_refused_and_changes_nothing(clinic, db):
    from lapins.models import Rdv, RdvAgent

    cancelled = book(clinic, paris(3, 10, 0))
    cancel_rdv(actor=clinic.colleague, rdv=cancelled, status=RdvStatus.EXCUSED, reason="Enfant malade")
    taken = book(clinic, paris(3, 10, 15))  # the freed time went to another family meanwhile

    with pytest.raises(BookingError) as refused:
        set_outcome(actor=clinic.colleague, rdv=cancelled, status=RdvStatus.UNKNOWN)

    assert refused.value.message.startswith("Impossible de rétablir ce rendez-vous : ")
    assert "a déjà un rendez-vous de 10h15 à 10h45" in refused.value.message
    assert not refused.value.can_force  # no override: the agent moves one of them first
    db.session.expire_all()
    again = db.session.get(Rdv, cancelled.id)
    assert again.status == RdvStatus.EXCUSED and again.cancelled_at is not None
    assert again.cancel_reason == "Enfant malade" and again.revision == cancelled.revision
    live = db.session.query(RdvAgent).filter_by(agent_id=clinic.agent.id, live=True).all()
    assert [link.rdv_id for link in live] == [taken.id]


def test_restoring_a_cancelled_rdv_whose_time_is_still_free_books_it_again(clinic, db):
    from lapins.models import RdvAgent

    rdv = book(clinic, paris(3, 10, 0))
    cancel_rdv(actor=clinic.colleague, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)
    book(clinic, paris(3, 10, 30))  # back to back: no conflict

    restored = set_outcome(actor=clinic.colleague, rdv=rdv, status=RdvStatus.UNKNOWN)

    assert restored.status == RdvStatus.UNKNOWN and restored.cancelled_at is None and restored.cancelled_via is None
    assert db.session.query(RdvAgent).filter_by(rdv_id=rdv.id, live=True).count() == 1
    with pytest.raises(BookingError, match="a déjà un rendez-vous de 10h00 à 10h30"):
        book(clinic, paris(3, 10, 0))  # the restored rdv holds its time again
