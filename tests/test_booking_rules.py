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

from lapins.booking import (COLLECTIVE_REFUSAL, MAX_DURATION, BookingError, RdvChanged, book_rdv, cancel_rdv, events,
                            family_move_refusal, family_moves, lock_agents, move_deadline, move_refusal, move_rdv,
                            set_outcome)
from lapins.booking import sessions
from lapins.booking.events import RdvBooked, RdvCancelled
from lapins.infra.extensions import db
from lapins.models import LocationType, Rdv, RdvStatus, Role
from lapins.models.rdvs import BookingChannel, CancellationChannel, Canceller, MoveChannel
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


# --- A family's own moves -----------------------------------------------------------------------------------------

def test_a_familys_move_is_refused_for_each_reason_in_turn_and_its_moves_are_counted_last(clinic):
    starts_at = paris(10, 9, 0)
    deadline = starts_at - timedelta(hours=24)
    counted = []

    def rule(now, *, live=True, moves_max=2, done=0):
        def moves_done():
            counted.append(done)
            return done
        return move_refusal(live=live, moves_max=moves_max, limit_hours=24, starts_at=starts_at,
                            moves_done=moves_done, now=now)

    before = deadline - timedelta(seconds=1)
    assert rule(before) is None and rule(before, moves_max=1) is None and rule(before, done=1) is None
    assert rule(before, moves_max=1, done=1) == ("Ce rendez-vous a déjà été déplacé 1 fois en ligne : pour le changer "
                                                 "encore, il faut appeler.")
    assert rule(before, done=2) == ("Ce rendez-vous a déjà été déplacé 2 fois en ligne : pour le changer encore, il "
                                    "faut appeler.")
    counted.clear()
    assert rule(deadline) == ("Il est trop tard pour changer la date en ligne : c'est possible jusqu'à 24 h avant le "
                              "rendez-vous.")  # the deadline itself is too late
    assert rule(before, live=False, done=9) == "Ce rendez-vous est annulé : il ne peut plus être déplacé."
    assert rule(before, moves_max=0) == "Ce type de rendez-vous ne peut pas être déplacé en ligne."
    assert counted == []  # counting the moves costs a query: only once the rest allows the move


def test_a_familys_moves_are_counted_per_rdv_against_its_motifs_limit(clinic, db):
    clinic.motif.family_moves_max, clinic.motif.move_limit_hours = 1, 24
    db.session.commit()
    rdv, other = book(clinic, paris(10, 9, 0)), book(clinic, paris(10, 10, 0))
    assert move_deadline(rdv) == paris(9, 9, 0)
    assert family_move_refusal(rdv, NOW) is None

    told = []
    with events.committed.connected_to(lambda _sender, *, event: told.append(event)):
        move_rdv(actor=None, rdv=rdv, starts_at=paris(10, 9, 30), via=MoveChannel.LINK)
    assert [(type(event).__name__, event.via) for event in told] == [("RdvMoved", MoveChannel.LINK)]
    assert (family_moves(rdv.id), family_moves(other.id)) == (1, 0)
    assert family_move_refusal(reread(rdv), NOW) == ("Ce rendez-vous a déjà été déplacé 1 fois en ligne : pour le "
                                                     "changer encore, il faut appeler.")
    assert family_move_refusal(reread(other), NOW) is None
    move_rdv(actor=clinic.colleague, rdv=other, starts_at=paris(10, 10, 30))  # an agent's move is not the family's
    assert family_moves(other.id) == 0


def test_a_move_from_a_page_of_an_older_revision_is_refused_and_changes_nothing(clinic, db):
    rdv = book(clinic, paris(3, 9, 0))
    move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 30), revision=0)
    with pytest.raises(RdvChanged) as refused:
        move_rdv(actor=clinic.colleague, rdv=reread(rdv), starts_at=paris(3, 10, 0), revision=0)
    assert refused.value.message == ("Ce rendez-vous a changé entre-temps (il vient peut-être d'être déplacé) : rien "
                                     "n'a été modifié.")
    assert reread(rdv).starts_at == paris(3, 9, 30)


# --- Who may be booked, and for what ---------------------------------------------------------------------------------

def test_a_home_visit_needs_an_address_when_booked_or_moved_to_and_the_refusal_names_the_first_two(
        clinic, factories, db):
    home = factories.MotifFactory(organisation=clinic.organisation, duration_minutes=30,
                                  location_type=LocationType.HOME)
    clinic.plage.motifs.append(home)
    family = [factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation],
                                      first_name=name) for name in ("Anna", "Boris", "Chloé")]
    db.session.commit()

    def without_address(*names: str) -> tuple[str, bool]:
        return (f"Ce motif est une visite à domicile : renseignez d'abord l'adresse de {' ou de '.join(names)} "
                "(fiche de l'usager, « Modifier »).", False)

    assert refusal(lambda: book(clinic, paris(3, 9, 0), motif=home, usagers=family)) == without_address(
        family[0].full_name, family[1].full_name)
    rdv = book(clinic, paris(3, 9, 0), usagers=family[:1])  # a consultation needs no address
    assert refusal(lambda: move_rdv(actor=clinic.colleague, rdv=rdv, starts_at=paris(3, 9, 0), motif=home)) == (
        without_address(family[0].full_name))
    assert reread(rdv).motif_id == clinic.motif.id
    family[2].address_street, family[2].address_postcode, family[2].address_commune = "3 rue Haute", "92000", "Nanterre"
    db.session.commit()
    assert book(clinic, paris(3, 10, 0), motif=home, usagers=family).motif_id == home.id  # one address is enough


def test_a_merged_file_is_refused_with_its_sentence_and_stops_no_other_familys_booking(clinic, factories, db):
    kept = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation])
    tombstone = factories.UsagerFactory(territory=clinic.organisation.territory, organisations=[clinic.organisation],
                                        merged_into=kept)
    db.session.commit()
    assert refusal(lambda: book(clinic, paris(3, 9, 0), usagers=[kept, tombstone])) == (
        "Ce dossier vient d'être fusionné avec un autre : rouvrez la fiche de l'usager gardé pour prendre le "
        "rendez-vous.", False)
    assert book(clinic, paris(3, 9, 0), usagers=[kept]).status == RdvStatus.UNKNOWN


def test_a_collective_motif_is_refused_one_family_at_a_time_and_the_guardian_to_tell_is_kept(clinic, factories, db):
    workshop = factories.MotifFactory(organisation=clinic.organisation, collective=True)
    db.session.commit()
    assert refusal(lambda: book(clinic, paris(3, 9, 0), motif=workshop)) == (COLLECTIVE_REFUSAL, False)
    assert COLLECTIVE_REFUSAL == "Ce motif est collectif : créez une séance ou inscrivez la famille à une séance."
    single = book(clinic, paris(3, 11, 0))
    assert refusal(lambda: move_rdv(actor=clinic.colleague, rdv=single, starts_at=paris(3, 11, 0), motif=workshop)) == (
        COLLECTIVE_REFUSAL, False)
    session = sessions.create_sessions(actor=clinic.agent, motif=workshop, agents=[clinic.agent], lieu=clinic.lieu,
                                       starts=[paris(4, 14, 0)], duration=timedelta(hours=1), capacity=4,
                                       title="Portage")[0]
    assert move_rdv(actor=clinic.agent, rdv=session, starts_at=paris(4, 15, 0)).starts_at == paris(4, 15, 0)
    assert refusal(lambda: move_rdv(actor=clinic.agent, rdv=session, starts_at=paris(4, 15, 0),
                                    motif=clinic.motif)) == (
        "Une séance collective garde un motif collectif : choisissez un motif d'atelier ou de séance de groupe.", False)
    assert (reread(single).motif_id, reread(session).motif_id) == (clinic.motif.id, workshop.id)
    rdv = book(clinic, paris(3, 9, 0), notify_only=clinic.usager)
    assert reread(rdv).notify_only_id == clinic.usager.id
    assert reread(book(clinic, paris(3, 10, 0))).notify_only_id is None


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
