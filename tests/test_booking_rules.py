"""Booking's rules to the letter: each refusal's exact French sentence and whether it may be overridden, the
boundaries, what a cancellation, a move and a restore write, and the agents' lock itself.

Written against the mutants of lapins/booking/__init__.py that the booking room's tests let through (docs/testing.md,
the mutation report): each test here fails on at least one of them.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select, text

from lapins.booking import MAX_DURATION, BookingError, book_rdv, cancel_rdv, events, lock_agents, move_rdv, set_outcome
from lapins.booking.events import RdvBooked, RdvCancelled
from lapins.infra.extensions import db
from lapins.models import LocationType, Rdv, RdvStatus, Role
from lapins.models.rdvs import BookingChannel, CancellationChannel, Canceller
from tests.test_booking import NOW, book, clinic, frozen_time, paris  # noqa: F401  (fixtures of the booking tests)


def refusal(call) -> tuple[str, bool]:
    with pytest.raises(BookingError) as refused:
        call()
    return refused.value.message, refused.value.can_force


def reread(rdv) -> Rdv:
    db.session.expire_all()
    return db.session.get(Rdv, rdv.id)


# --- Every refusal, word for word ------------------------------------------------------------------------------------

def test_each_refusal_says_exactly_why_and_only_conflicts_and_hours_may_be_overridden(clinic, factories, db):
    other_lieu = factories.LieuFactory(organisation=clinic.organisation, name="Antenne fermée")
    closed = factories.LieuFactory(organisation=clinic.organisation, name="Centre fermé", active=False)
    second = book(clinic, paris(3, 11, 0))  # booked first: the earlier rdv is named, not the older one
    first = book(clinic, paris(3, 10, 0))
    cancelled = book(clinic, paris(4, 9, 0))
    cancel_rdv(actor=clinic.colleague, rdv=cancelled, status=RdvStatus.EXCUSED, reason=None)

    cases = {
        "conflict": (lambda: book(clinic, paris(3, 9, 45), ends_at=paris(3, 11, 15)),
                     "Martin", True),  # the earliest of the two rdvs it overlaps is named
        "outside hours": (lambda: book(clinic, paris(3, 14, 0)),
                          "Ce créneau est en dehors des plages d'ouverture de l'agent pour ce motif dans ce lieu.", True),
        "outside hours, other lieu": (lambda: book(clinic, paris(3, 9, 0), lieu=other_lieu),
                                      "Ce créneau est en dehors des plages d'ouverture de l'agent pour ce motif dans "
                                      "ce lieu.", True),
        "no agent": (lambda: book(clinic, paris(3, 9, 0), agents=[]), "Choisissez au moins un agent.", False),
        "no usager": (lambda: book(clinic, paris(3, 9, 0), usagers=[]), "Choisissez au moins un usager.", False),
        "no lieu": (lambda: book(clinic, paris(3, 9, 0), lieu=None), "Choisissez le lieu du rendez-vous.", False),
        "closed lieu": (lambda: book(clinic, paris(3, 9, 0), lieu=closed),
                        "Le lieu « Centre fermé » est fermé : choisissez-en un autre.", False),
        "end before start": (lambda: book(clinic, paris(3, 9, 0), ends_at=paris(3, 9, 0)),
                             "La fin du rendez-vous doit être après son début.", False),
        "too long": (lambda: book(clinic, paris(3, 8, 0), ends_at=paris(3, 8, 0) + MAX_DURATION + timedelta(minutes=1),
                                  force=True), "Un rendez-vous ne peut pas durer plus de 12 heures.", False),
        "move a cancelled rdv": (lambda: move_rdv(actor=clinic.colleague, rdv=cancelled, starts_at=paris(5, 9, 0)),
                                 "Ce rendez-vous est annulé : il ne peut plus être déplacé.", False),
        "unknown cancellation status": (lambda: cancel_rdv(actor=clinic.colleague, rdv=second, status=RdvStatus.SEEN,
                                                           reason=None), "Motif d'annulation inconnu.", False),
        "unknown outcome": (lambda: set_outcome(actor=clinic.colleague, rdv=second, status=RdvStatus.REVOKED),
                            "Statut inconnu.", False),
        "not started": (lambda: set_outcome(actor=clinic.colleague, rdv=second, status=RdvStatus.SEEN),
                        "Ce rendez-vous n'a pas encore commencé : il ne peut pas être marqué vu ou absent.", False),
    }
    for what, (call, message, can_force) in cases.items():
        said, may_force = refusal(call)
        if what == "conflict":
            assert said == (f"{clinic.agent.full_name} a déjà un rendez-vous de 10h00 à 10h30 sur ce créneau."), said
        else:
            assert said == message, (what, said)
        assert may_force is can_force, what
    clinic.motif.active = False
    db.session.commit()
    assert refusal(lambda: book(clinic, paris(3, 9, 0))) == ("Ce motif n'est plus proposé.", False)
    assert [reread(rdv).status for rdv in (first, second)] == [RdvStatus.UNKNOWN] * 2


def test_the_boundaries_twelve_hours_aware_times_a_start_that_is_now(clinic, db):
    long = book(clinic, paris(3, 8, 0), ends_at=paris(3, 8, 0) + MAX_DURATION, force=True)  # exactly 12 h: allowed
    assert long.ends_at - long.starts_at == MAX_DURATION
    with pytest.raises(ValueError):
        book(clinic, paris(4, 9, 0), ends_at=paris(4, 9, 30).replace(tzinfo=None))  # one naive time is enough
    with pytest.raises(ValueError):
        book(clinic, paris(4, 9, 0).replace(tzinfo=None), ends_at=paris(4, 9, 30))
    rdv = book(clinic, paris(5, 9, 0))
    with time_machine.travel(rdv.starts_at, tick=False):  # it starts now: it has started
        assert set_outcome(actor=clinic.colleague, rdv=rdv, status=RdvStatus.SEEN).status == RdvStatus.SEEN


def test_a_motif_without_a_lieu_is_booked_moved_and_checked_against_any_opening(clinic, factories, db):
    clinic.motif.location_type = LocationType.PHONE
    db.session.commit()
    rdv = book(clinic, paris(3, 9, 0), lieu=None)
    assert rdv.lieu_id is None and rdv.status == RdvStatus.UNKNOWN
    assert refusal(lambda: book(clinic, paris(3, 14, 0), lieu=None)) == (
        "Ce créneau est en dehors des plages d'ouverture de l'agent pour ce motif.", True)
    moved = move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 10, 0), lieu=None)
    assert moved.starts_at == paris(3, 10, 0) and moved.revision == 1
    kept = move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 10, 0), lieu=None, notes="Par téléphone")
    assert kept.revision == 1 and kept.notes == "Par téléphone"  # same time, still no lieu: nothing to tell


# --- What is written ------------------------------------------------------------------------------------------------

def test_cancelling_one_rdv_leaves_every_other_live_and_records_who_why_and_the_revision(clinic, factories, db):
    other_family = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation])
    kept = book(clinic, paris(3, 9, 0), usagers=[other_family])
    rdv = book(clinic, paris(3, 10, 0))
    move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 10, 30))  # revision 1
    told = []
    with events.committed.connected_to(lambda _sender, *, event: told.append(event)):
        cancel_rdv(actor=clinic.colleague, rdv=rdv, status=RdvStatus.REVOKED, reason="  " + "x" * 300)

    assert reread(kept).status == RdvStatus.UNKNOWN and reread(kept).is_live
    cancelled = reread(rdv)
    assert cancelled.status == RdvStatus.REVOKED and cancelled.revision == 2
    assert cancelled.cancel_reason == "x" * 255
    assert told == [RdvCancelled(rdv.id, clinic.colleague.id, by=Canceller.AGENT, via=CancellationChannel.AGENDA)]

    silent = book(clinic, paris(3, 11, 0))
    cancel_rdv(actor=clinic.colleague, rdv=silent, status=RdvStatus.EXCUSED, reason="   ")
    assert reread(silent).cancel_reason is None
    system = book(clinic, paris(4, 9, 0))
    cancel_rdv(actor=None, rdv=system, status=RdvStatus.REVOKED, reason=None, via=CancellationChannel.API)
    assert reread(system).cancelled_by_party == Canceller.SYSTEM and reread(system).cancelled_by_id is None
    assert reread(system).cancel_reason is None


def test_a_move_tells_the_family_when_the_time_the_lieu_or_the_motif_changes_and_keeps_or_replaces_the_notes(
        clinic, factories, db):
    other_lieu = factories.LieuFactory(organisation=clinic.organisation)
    other_motif = factories.MotifFactory(organisation=clinic.organisation, duration_minutes=30)
    factories.PlageFactory(agent=clinic.agent, lieu=other_lieu, first_day=NOW.date(), motifs=[clinic.motif])
    clinic.plage.motifs.append(other_motif)
    db.session.commit()
    rdv = book(clinic, paris(3, 9, 0), notes="  Apporter le carnet  ")
    assert rdv.notes == "Apporter le carnet"
    move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 0), notes="")  # notes only: not told
    assert (reread(rdv).revision, reread(rdv).notes) == (0, None)
    move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 0), notes="Pesée")
    move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 0), lieu=other_lieu)  # the lieu alone
    assert (reread(rdv).revision, reread(rdv).notes) == (1, "Pesée")  # notes kept when not given
    move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 0), motif=other_motif, lieu=clinic.lieu)
    assert reread(rdv).revision == 2
    move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 30))
    assert reread(rdv).revision == 3


def test_a_move_over_a_conflict_passes_only_when_forced_and_records_who(clinic, db):
    rdv = book(clinic, paris(3, 9, 0))
    book(clinic, paris(3, 10, 0))
    moved = move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 10, 0), force=True)
    assert moved.starts_at == paris(3, 10, 0) and moved.forced_by_id == clinic.colleague.id


def test_restoring_counts_a_revision_and_a_family_booking_from_an_offer_has_no_author(clinic, db):
    rdv = book(clinic, paris(3, 9, 0))
    move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 30))
    cancel_rdv(actor=clinic.colleague, rdv=rdv, status=RdvStatus.EXCUSED, reason=None)
    set_outcome(actor=clinic.colleague, rdv=rdv, status=RdvStatus.UNKNOWN)
    assert (reread(rdv).revision, reread(rdv).status) == (3, RdvStatus.UNKNOWN)

    told = []
    with events.committed.connected_to(lambda _sender, *, event: told.append(event)):
        offered = book_rdv(actor=None, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.usager],
                           starts_at=paris(3, 11, 0), lieu=clinic.lieu, via=BookingChannel.OFFER)
    assert offered.created_by_id is None and told == [RdvBooked(offered.id, None, via=BookingChannel.OFFER)]


# --- The lock itself --------------------------------------------------------------------------------------------------

def test_the_lock_holds_exactly_the_booked_agents_rows_until_the_commit(postgres_url):
    """On PostgreSQL, from another connection: the booked agents' rows are locked (NOWAIT fails), another agent's are
    not, and the lock goes with the commit. The race tests show bookings wait for each other; this shows on whom."""
    from lapins import create_app
    from tests import factories

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=postgres_url)
    with app.app_context():
        organisation = factories.OrganisationFactory()
        booked, other, third = (factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
                                for _ in range(3))
        ids = (booked.id, other.id, third.id)
        db.session.commit()

        lock_agents([ids[0], ids[2]])
        with db.engine.connect() as outsider:
            def locked(agent_id: int) -> bool:
                try:
                    outsider.execute(text("SELECT id FROM agents WHERE id = :id FOR UPDATE NOWAIT"), {"id": agent_id})
                except Exception:  # noqa: BLE001  (psycopg's LockNotAvailable, wrapped)
                    outsider.rollback()
                    return True
                outsider.rollback()
                return False

            assert [locked(agent_id) for agent_id in ids] == [True, False, True]
            db.session.commit()
            assert [locked(agent_id) for agent_id in ids] == [False, False, False]
        db.session.remove()
        db.engine.dispose()


def test_of_several_conflicts_among_several_agents_the_earliest_is_named(clinic, db):
    """A joint booking over two agents' rdvs names the earliest of them, whoever's it is (the index returns the
    first agent's rows first: the order is the query's own)."""
    assert clinic.agent.id < clinic.colleague.id
    book(clinic, paris(3, 10, 30))
    book(clinic, paris(3, 10, 0), agents=[clinic.colleague], force=True)  # the colleague has no opening: forced
    said, may_force = refusal(lambda: book(clinic, paris(3, 9, 45), ends_at=paris(3, 11, 0),
                                           agents=[clinic.agent, clinic.colleague]))
    assert said == f"{clinic.colleague.full_name} a déjà un rendez-vous de 10h00 à 10h30 sur ce créneau."
    assert may_force
