"""The family's identity check counted exactly, by a controlled clock (lapins.family.services).

tests/test_family_identity_limits.py attacks the check with simultaneous requests on a live server; here each rule
of the count is pinned at its bounds, with `now` given, on the suite's database (SQLite, then PostgreSQL under
scripts/run_tests.py): five wrong tries in a row lock the check for exactly LOCK_DURATION, tries LOCK_DURATION apart
do not add up, a right guess clears the count and the lock its try set, one rdv's tries never count on another's.
The same file pins the letters compared, the browser's memory of checked rdvs and the cancellation deadline.
Written against the surviving mutants of `make mutate`'s identity room (docs/testing.md).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from lapins.booking import BookingError, cancellation_deadline
from lapins.infra.extensions import db
from lapins.family import services
from lapins.family.services import LOCK_DURATION, MAX_FAILURES, Try, forget_failures, locked_until, take_try
from lapins.models import RdvStatus, Role
from lapins.models.rdvs import CancellationChannel, RdvLinkCheck

T0 = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


@pytest.fixture()
def family(factories):
    organisation = factories.OrganisationFactory()
    motif = factories.MotifFactory(organisation=organisation, cancellation_limit_hours=24)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    usager = factories.UsagerFactory(territory=organisation.territory, last_name="Payet")
    first, second = (factories.RdvFactory(motif=motif, agents=[agent], usagers=[usager],
                                          starts_at=T0 + timedelta(days=3, hours=hour)) for hour in (0, 1))
    db.session.commit()
    return first, second, usager


def stored(rdv_id: int) -> tuple[int, datetime | None, datetime | None] | None:
    """The row as the database has it: (failures, last_failure_at, locked_until)."""
    db.session.expire_all()
    row = db.session.get(RdvLinkCheck, rdv_id)
    return None if row is None else (row.failures, row.last_failure_at, row.locked_until)


def test_five_wrong_tries_in_a_row_lock_the_check_for_exactly_the_lock_duration(family):
    rdv = family[0].id
    for n in range(1, MAX_FAILURES):
        attempt = take_try(rdv, T0 + (n - 1) * MINUTE)
        assert attempt == Try(failures=n, locked_until=None) and attempt.tries_left == MAX_FAILURES - n
        assert locked_until(rdv, T0 + (n - 1) * MINUTE) is None

    last = T0 + (MAX_FAILURES - 1) * MINUTE
    attempt = take_try(rdv, last)
    assert attempt == Try(failures=MAX_FAILURES, locked_until=last + LOCK_DURATION) and attempt.tries_left == 0
    assert stored(rdv) == (MAX_FAILURES, last, last + LOCK_DURATION)

    # Locked: no try is taken (so no guess is checked) until the very second the lock ends, and nothing is counted.
    for now in (last, last + MINUTE, last + LOCK_DURATION - SECOND):
        assert locked_until(rdv, now) == last + LOCK_DURATION
        assert take_try(rdv, now) is None
    assert stored(rdv) == (MAX_FAILURES, last, last + LOCK_DURATION)

    # At the lock's end the check is open again and the count starts over.
    assert locked_until(rdv, last + LOCK_DURATION) is None
    assert take_try(rdv, last + LOCK_DURATION) == Try(failures=1, locked_until=None)
    assert stored(rdv) == (1, last + LOCK_DURATION, None)


def test_wrong_tries_a_lock_duration_apart_do_not_add_up(family):
    rdv = family[0].id
    assert take_try(rdv, T0).failures == 1
    second = T0 + LOCK_DURATION - SECOND  # just within the window of the first
    assert take_try(rdv, second).failures == 2
    assert take_try(rdv, second + LOCK_DURATION) == Try(failures=1, locked_until=None)  # exactly a window later
    assert take_try(rdv, second + LOCK_DURATION + SECOND).failures == 2


def test_a_right_guess_clears_the_count_and_the_lock_its_own_try_set(family):
    rdv, other = family[0].id, family[1].id
    for n in range(MAX_FAILURES - 1):
        take_try(rdv, T0 + n * MINUTE)
    take_try(other, T0)
    take_try(other, T0 + MINUTE)

    # The fifth guess is counted before it is checked, so it sets the lock; being right, it lifts it.
    last = T0 + (MAX_FAILURES - 1) * MINUTE
    assert take_try(rdv, last).locked_until == last + LOCK_DURATION
    forget_failures(rdv)

    assert stored(rdv) == (0, None, None) and locked_until(rdv, last) is None
    assert take_try(rdv, last + SECOND) == Try(failures=1, locked_until=None)
    assert stored(other) == (2, T0 + MINUTE, None)  # another rdv's count is kept


def test_one_rdvs_wrong_tries_never_count_on_another(family):
    rdv, other = family[0].id, family[1].id
    for n in range(3):
        take_try(rdv, T0 + n * MINUTE)

    assert stored(other) is None and locked_until(other, T0) is None
    assert take_try(other, T0 + 3 * MINUTE) == Try(failures=1, locked_until=None)
    assert stored(rdv) == (3, T0 + 2 * MINUTE, None)
    assert stored(other) == (1, T0 + 3 * MINUTE, None)

    for n in range(4, 4 + MAX_FAILURES - 3):  # rdv locked; other still open
        take_try(rdv, T0 + n * MINUTE)
    assert locked_until(rdv, T0 + 6 * MINUTE) is not None and locked_until(other, T0 + 6 * MINUTE) is None
    assert take_try(other, T0 + 6 * MINUTE).failures == 2


def test_a_count_already_at_the_limit_refuses_even_without_its_lock(family):
    """The limit holds on the count itself, not only on the lock the MAX_FAILURES-th try writes: a row counting
    MAX_FAILURES tries in a row with no lock (written by hand, or by an older version) checks no more guesses."""
    rdv = family[0].id
    take_try(rdv, T0)
    db.session.execute(update(RdvLinkCheck).where(RdvLinkCheck.rdv_id == rdv)
                       .values(failures=MAX_FAILURES, last_failure_at=T0, locked_until=None))
    db.session.commit()

    assert take_try(rdv, T0 + MINUTE) is None
    assert stored(rdv) == (MAX_FAILURES, T0, None)
    assert take_try(rdv, T0 + LOCK_DURATION).failures == 1  # the window over, counted afresh


def test_the_letters_compared_fold_case_accents_ligatures_and_punctuation():
    assert services.letters_of("N'Diaye-Éloi") == "ndiayeeloi"
    assert services.letters_of("ŒUVRARD Lætitia") == "oeuvrardlaetitia"
    assert services.letters_of("Bœuf Æ") == "boeufae"
    assert services.letters_of("  ç-À 2 ") == "ca"
    assert services.names_match(["Œuvrard"], "oeu") and services.names_match(["Lætitia"], "LAE")


def test_the_check_compares_the_letters_typed_with_the_families_names(family):
    rdv = family[0]
    assert services.identity_matches(rdv, "pay") and services.identity_matches(rdv, "Payet")
    assert not services.identity_matches(rdv, "Dur") and not services.identity_matches(rdv, "")


def test_a_browser_remembers_the_last_rdvs_it_checked_once_each():
    session: dict = {}
    assert not services.is_checked(session, 1)
    services.remember_check(session, 1)
    services.remember_check(session, 2)
    assert services.is_checked(session, 1) and services.is_checked(session, 2) and not services.is_checked(session, 3)
    services.remember_check(session, 1)  # again: moved last, not repeated
    assert session[services.SESSION_KEY] == [2, 1]

    for rdv_id in range(3, 3 + services.SESSION_KEPT):
        services.remember_check(session, rdv_id)
    assert session[services.SESSION_KEY] == list(range(3, 3 + services.SESSION_KEPT))  # the oldest two forgotten
    assert not services.is_checked(session, 2) and not services.is_checked(session, 1)


def test_the_family_cancels_until_the_deadline_exclusive_with_the_guardian_recorded(family):
    rdv, _, usager = family
    deadline = cancellation_deadline(rdv)
    assert deadline == rdv.starts_at - timedelta(hours=24)
    assert services.can_cancel_online(rdv, deadline - SECOND) and not services.can_cancel_online(rdv, deadline)

    with pytest.raises(BookingError) as late:
        services.cancel_from_link(rdv, "Enfant malade", deadline, guardian_id=usager.id)
    assert str(late.value) == "Il est trop tard pour annuler ce rendez-vous en ligne."
    assert rdv.is_live

    services.cancel_from_link(rdv, "Enfant malade", deadline - SECOND, guardian_id=usager.id)
    db.session.expire_all()
    assert rdv.status == RdvStatus.EXCUSED and rdv.cancelled_via == CancellationChannel.LINK
    assert rdv.cancel_reason == "Enfant malade" and rdv.link_actor_id == usager.id
    assert not services.can_cancel_online(rdv, T0)

    with pytest.raises(BookingError) as again:
        services.cancel_from_link(rdv, None, T0)
    assert str(again.value) == "Ce rendez-vous est déjà annulé."
