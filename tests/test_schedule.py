"""Horaires: agents (and their managers) keep plages d'ouverture and absences, refused with French messages."""
from __future__ import annotations

from datetime import date, time, timedelta
from html import unescape

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from lapins.slots import engine as slots
from lapins.agenda.schedule_services import first_common_day
from lapins.models import Absence, PlageOuverture, Role
from tests.conftest import csrf_token_from

MONDAY = date(2026, 1, 5)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel("2026-01-05 08:00 +01:00", tick=False):
        yield


@pytest.fixture()
def world(factories):
    """One PMI organisation with an agent, a colleague, an admin and a secretary; and a stranger elsewhere."""
    f = factories
    organisation = f.OrganisationFactory(name="PMI Nord")
    elsewhere = f.OrganisationFactory(name="PMI Sud")

    class World:
        org = organisation
        lieu = f.LieuFactory(organisation=organisation, name="Centre PMI Gare")
        lieu2 = f.LieuFactory(organisation=organisation, name="Centre PMI Mairie")
        motif = f.MotifFactory(organisation=organisation, name="Consultation nourrisson")
        motif2 = f.MotifFactory(organisation=organisation, name="Pesée")
        inactive_motif = f.MotifFactory(organisation=organisation, name="Ancien motif", active=False)
        agent = f.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, first_name="Claire", last_name="Martin")
        colleague = f.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, first_name="Lucie", last_name="Bernard")
        admin = f.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN, first_name="Anne", last_name="Admin")
        secretary = f.AgentFactory(organisation=organisation, organisation__role=Role.SECRETARY, first_name="Sam", last_name="Secret")
        other_org = elsewhere
        other_lieu = f.LieuFactory(organisation=elsewhere, name="Centre PMI Port")
        other_motif = f.MotifFactory(organisation=elsewhere, name="Vaccination")
        stranger = f.AgentFactory(organisation=elsewhere, organisation__role=Role.ADMIN, first_name="Paul", last_name="Ailleurs")

    return World


def plage_data(w, **overrides) -> dict:
    data = {
        "title": "Consultations du matin",
        "lieu_id": w.lieu.id,
        "motif_ids": [w.motif.id],
        "weekdays": ["0", "1"],
        "every_n_weeks": "1",
        "first_day": "2026-01-05",
        "last_day": "",
        "start_time": "09:00",
        "end_time": "12:00",
    }
    data.update(overrides)
    return data


def absence_data(**overrides) -> dict:
    data = {
        "title": "Formation",
        "kind": "ponctuelle",
        "first_day": "2026-01-12",
        "last_day": "2026-01-13",
        "start_time": "14:00",
        "end_time": "12:00",
        "every_n_weeks": "1",
    }
    data.update(overrides)
    return data


def text_of(response) -> str:
    """The page as a person reads it (entities such as &#39; decoded)."""
    return unescape(response.get_data(as_text=True))


def submit(client, form_url: str, data: dict, post_url: str | None = None):
    """Open the form as a person would, take its CSRF token, post the data."""
    page = client.get(form_url)
    assert page.status_code == 200, page.status_code
    token = csrf_token_from(text_of(page))
    return client.post(post_url or form_url, data={**data, "csrf_token": token})


def new_plage_url(agent) -> str:
    return f"/agents/{agent.id}/plages/nouvelle"


def count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def only_plage(db) -> PlageOuverture:
    db.session.expire_all()
    return db.session.scalars(select(PlageOuverture)).one()


# --- Plages d'ouverture: create, show, edit, delete ---------------------------------------------------------------


def test_agent_creates_a_plage_and_sees_it_described_in_french(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, motif_ids=[world.motif.id, world.motif2.id]))

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/agents/{world.agent.id}/horaires")
    page = text_of(client.get(response.headers["Location"]))
    assert "La plage d'ouverture « Consultations du matin » est enregistrée." in page
    assert "fr-alert--success" in page
    for text in ("Centre PMI Gare", "Consultation nourrisson", "Pesée", "Lundi et mardi, de 09h00 à 12h00",
                 "Chaque semaine, à partir du 05/01/2026"):
        assert text in page
    plage = only_plage(db)
    assert (plage.weekdays, plage.every_n_weeks, plage.organisation_id) == (0b11, 1, world.org.id)
    assert (plage.start_time, plage.end_time, plage.last_day) == (time(9), time(12), None)


def test_every_other_week_plage_is_shown_as_toutes_les_2_semaines(client, auth, db, world):
    auth.login(world.agent)
    submit(client, new_plage_url(world.agent), plage_data(world, every_n_weeks="2", weekdays=["2"], last_day="2026-06-30"))

    page = text_of(client.get(f"/agents/{world.agent.id}/horaires"))
    assert "Mercredi, de 09h00 à 12h00" in page
    assert "Toutes les 2 semaines, du 05/01/2026 au 30/06/2026" in page


def test_plage_form_offers_only_active_motifs_and_lieux_of_the_agents_organisation(client, auth, world):
    auth.login(world.agent)
    page = text_of(client.get(new_plage_url(world.agent)))

    assert "Centre PMI Gare" in page and "Consultation nourrisson" in page
    assert "Ancien motif" not in page
    assert "Centre PMI Port" not in page and "Vaccination" not in page


def test_agent_edits_a_plage(client, auth, db, world, factories):
    plage = factories.PlageFactory(agent=world.agent, lieu=world.lieu, motifs=[world.motif], title="Ancien titre")
    auth.login(world.agent)
    url = f"/plages/{plage.id}/modifier"
    form = text_of(client.get(url))
    assert 'value="Ancien titre"' in form

    response = submit(client, url, plage_data(world, title="Après-midi", lieu_id=world.lieu2.id, motif_ids=[world.motif2.id],
                                              start_time="14:00", end_time="17:30", weekdays=["4"]))

    assert response.status_code == 302
    plage = only_plage(db)
    assert (plage.title, plage.lieu_id, [m.name for m in plage.motifs]) == ("Après-midi", world.lieu2.id, ["Pesée"])
    assert (plage.start_time, plage.end_time, plage.weekdays) == (time(14), time(17, 30), 1 << 4)
    assert "La plage d'ouverture « Après-midi » est modifiée." in text_of(client.get(response.headers["Location"]))


def test_deleting_a_plage_asks_for_confirmation_then_removes_it(client, auth, db, world, factories):
    plage = factories.PlageFactory(agent=world.agent, lieu=world.lieu, motifs=[world.motif], title="À supprimer")
    auth.login(world.agent)
    url = f"/plages/{plage.id}/supprimer"

    confirmation = text_of(client.get(url))
    assert "Supprimer la plage d'ouverture « À supprimer » ?" in confirmation
    assert count(db, PlageOuverture) == 1

    response = client.post(url, data={"csrf_token": csrf_token_from(confirmation)})
    assert response.status_code == 302
    assert count(db, PlageOuverture) == 0
    assert "La plage d'ouverture « À supprimer » est supprimée." in text_of(client.get(response.headers["Location"]))


# --- Plages: every refusal is a message next to its field, and nothing is stored ------------------------------------


def assert_refused(response, db, message: str, model=PlageOuverture) -> str:
    page = text_of(response)
    assert response.status_code == 422
    assert message in page
    assert "fr-input-group--error" in page or "fr-fieldset--error" in page or "fr-alert--error" in page
    assert count(db, model) == 0
    return page


def test_end_time_before_start_time_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, start_time="12:00", end_time="09:00"))
    page = assert_refused(response, db, "L'heure de fin doit être après l'heure de début.")
    assert 'id="end_time-error"' in page and "fr-input-group--error" in page


def test_end_time_equal_to_start_time_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, start_time="09:00", end_time="09:00"))
    assert_refused(response, db, "L'heure de fin doit être après l'heure de début.")


def test_last_day_before_first_day_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, first_day="2026-02-01", last_day="2026-01-15"))
    assert_refused(response, db, "Le dernier jour ne peut pas être avant le premier jour.")


def test_plage_without_any_weekday_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, weekdays=[]))
    page = assert_refused(response, db, "Cochez au moins un jour de la semaine.")
    assert "fr-fieldset--error" in page


def test_unknown_weekday_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, weekdays=["7"]))
    assert_refused(response, db, "Jour de la semaine inconnu.")


def test_plage_without_any_motif_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, motif_ids=[]))
    assert_refused(response, db, "Cochez au moins un motif.")


@pytest.mark.parametrize("lieu_id", ["", "0", "999999", "99999999999999999999999", "gare"])
def test_missing_or_unknown_lieu_is_refused(client, auth, db, world, lieu_id):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, lieu_id=lieu_id))
    assert_refused(response, db, "Choisissez un lieu dans la liste.")


def test_lieu_of_another_organisation_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, lieu_id=world.other_lieu.id))
    assert_refused(response, db, "Choisissez un lieu dans la liste.")


@pytest.mark.parametrize("motif", ["other_motif", "inactive_motif"])
def test_motif_of_another_organisation_or_inactive_is_refused(client, auth, db, world, motif):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, motif_ids=[getattr(world, motif).id]))
    assert_refused(response, db, "Choisissez les motifs dans la liste.")


def test_motifs_must_belong_to_the_organisation_of_the_lieu(client, auth, db, world, factories):
    """An agent working for two organisations cannot mix one's lieu with the other's motifs."""
    from lapins.models import AgentRole

    db.session.add(AgentRole(agent=world.agent, organisation=world.other_org, role=Role.AGENT))
    db.session.commit()
    auth.login(world.agent)
    form = text_of(client.get(new_plage_url(world.agent)))
    assert "Motifs — PMI Sud" in form and '<optgroup label="PMI Sud">' in form

    response = submit(client, new_plage_url(world.agent), plage_data(world, motif_ids=[world.motif.id, world.other_motif.id]))
    assert_refused(response, db, "Ces motifs n'appartiennent pas à l'organisation du lieu choisi (PMI Nord) : Vaccination.")


@pytest.mark.parametrize("every_n_weeks", ["0", "5", "-1", "deux"])
def test_frequency_out_of_range_is_refused(client, auth, db, world, every_n_weeks):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, every_n_weeks=every_n_weeks))
    assert_refused(response, db, "Choisissez une fréquence entre 1 et 4 semaines.")


@pytest.mark.parametrize("first_day", ["2026-02-30", "lundi", "05/13/2026", "0001-01-01"])
def test_malformed_or_absurd_date_is_refused(client, auth, db, world, first_day):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, first_day=first_day))
    page = text_of(response)
    assert response.status_code == 422 and count(db, PlageOuverture) == 0
    assert "Saisissez une date valide (exemple : 05/01/2026)." in page or "Saisissez une date entre 2000 et 2099." in page


def test_date_typed_as_jj_mm_aaaa_is_accepted(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, first_day="12/01/2026"))
    assert response.status_code == 302
    assert only_plage(db).first_day == date(2026, 1, 12)


def test_missing_first_day_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, first_day=""))
    assert_refused(response, db, "Indiquez le premier jour.")


@pytest.mark.parametrize("start_time", ["25:00", "9 heures", "09:61"])
def test_malformed_time_is_refused(client, auth, db, world, start_time):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, start_time=start_time))
    assert_refused(response, db, "Saisissez une heure valide au format HH:MM (exemple : 09:00).")


def test_title_longer_than_the_column_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, title="x" * 161))
    assert_refused(response, db, "Le titre ne doit pas dépasser 160 caractères.")


def test_huge_values_are_refused_without_error(client, auth, db, world):
    auth.login(world.agent)
    huge = "9" * 100_000
    response = submit(client, new_plage_url(world.agent), plage_data(
        world, title=huge, lieu_id=huge, motif_ids=[huge], weekdays=[huge], first_day=huge, start_time=huge))
    assert_refused(response, db, "Le titre ne doit pas dépasser 160 caractères.")


def test_missing_title_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, title="   "))
    assert_refused(response, db, "Donnez un titre à la plage d'ouverture.")


# --- Plages: an agent is never open in two places at once --------------------------------------------------------


def existing_plage(factories, world, **kwargs):
    values = dict(agent=world.agent, lieu=world.lieu2, motifs=[world.motif], title="Permanence Mairie",
                  first_day=MONDAY, weekdays=0b1, start_time=time(10), end_time=time(11))
    values.update(kwargs)
    return factories.PlageFactory(**values)


def test_overlapping_plage_is_refused_naming_the_other_plage(client, auth, db, world, factories):
    existing_plage(factories, world)
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world))

    page = text_of(response)
    assert response.status_code == 422
    assert "Cette plage chevauche la plage d'ouverture « Permanence Mairie » (Centre PMI Mairie)" in page
    assert "lundi 5 janvier 2026 de 10h00 à 11h00" in page
    assert count(db, PlageOuverture) == 1


def test_overlap_with_a_plage_in_another_organisation_is_refused_without_revealing_it(client, auth, db, world, factories):
    from lapins.models import AgentRole

    db.session.add(AgentRole(agent=world.agent, organisation=world.other_org, role=Role.AGENT))
    db.session.commit()
    existing_plage(factories, world, lieu=world.other_lieu, motifs=[world.other_motif], title="Secret Sud")
    auth.login(world.admin)  # manages the agent in PMI Nord only
    response = submit(client, new_plage_url(world.agent), plage_data(world))

    page = text_of(response)
    assert response.status_code == 422
    assert "chevauche une plage d'ouverture de cet agent dans une autre organisation" in page
    assert "Secret Sud" not in page
    assert count(db, PlageOuverture) == 1


def test_colleagues_plage_at_the_same_time_is_not_an_overlap(client, auth, db, world, factories):
    existing_plage(factories, world, agent=world.colleague)
    auth.login(world.agent)
    assert submit(client, new_plage_url(world.agent), plage_data(world)).status_code == 302


@pytest.mark.parametrize("changes", [
    {"start_time": "11:00", "end_time": "12:00"},  # back to back: 10h-11h then 11h-12h
    {"weekdays": ["2"]},  # another weekday
    {"first_day": "2026-02-02"},  # after the other plage has ended (see last_day below)
], ids=["back-to-back", "other-weekday", "after-it-ends"])
def test_plages_that_never_meet_are_accepted(client, auth, db, world, factories, changes):
    existing_plage(factories, world, last_day=date(2026, 1, 31))
    auth.login(world.agent)
    response = submit(client, new_plage_url(world.agent), plage_data(world, **changes))
    assert response.status_code == 302
    assert count(db, PlageOuverture) == 2


def test_plages_on_alternate_weeks_do_not_overlap(client, auth, db, world, factories):
    existing_plage(factories, world, every_n_weeks=2)  # Mondays 5 and 19 January, 2 February...
    auth.login(world.agent)

    # Counted from the week of Wednesday 14 January: Mondays 26 January, 9 February... never the same weeks.
    odd_weeks = plage_data(world, weekdays=["0"], every_n_weeks="2", first_day="2026-01-14")
    assert submit(client, new_plage_url(world.agent), odd_weeks).status_code == 302

    same_weeks = plage_data(world, title="Même semaine", weekdays=["0"], every_n_weeks="4", first_day="2026-02-02")
    response = submit(client, new_plage_url(world.agent), same_weeks)
    assert response.status_code == 422
    assert "lundi 2 février 2026" in text_of(response)


def test_editing_a_plage_does_not_conflict_with_itself(client, auth, db, world, factories):
    plage = existing_plage(factories, world)
    auth.login(world.agent)
    response = submit(client, f"/plages/{plage.id}/modifier", plage_data(world, start_time="10:30", end_time="11:30"))
    assert response.status_code == 302
    assert only_plage(db).start_time == time(10, 30)


def test_refused_edit_leaves_the_plage_unchanged(client, auth, db, world, factories):
    plage = existing_plage(factories, world, title="Intacte")
    auth.login(world.agent)
    response = submit(client, f"/plages/{plage.id}/modifier", plage_data(world, title="Changée", end_time="08:00"))
    assert response.status_code == 422
    assert only_plage(db).title == "Intacte"


def recurrences():
    days = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 6, 30))
    return st.builds(
        lambda first, length, mask, n: slots.Recurrence(
            first_day=first, last_day=None if length is None else first + timedelta(days=length),
            start_time=time(9), end_time=time(12), weekdays=mask, every_n_weeks=n),
        days, st.one_of(st.none(), st.integers(0, 120)), st.integers(1, 127), st.integers(1, 4),
    )


@settings(max_examples=300, deadline=None)
@given(recurrences(), recurrences())
def test_first_common_day_matches_a_day_by_day_search(a, b):
    expected = next((day for day in (date(2026, 1, 1) + timedelta(days=i) for i in range(400))
                     if a.occurs_on(day) and b.occurs_on(day)), None)
    assert first_common_day(a, b) == expected


# --- Absences ------------------------------------------------------------------------------------------------------


def new_absence_url(agent) -> str:
    return f"/agents/{agent.id}/absences/nouvelle"


def only_absence(db) -> Absence:
    db.session.expire_all()
    return db.session.scalars(select(Absence)).one()


def test_agent_records_a_one_off_absence_over_two_days(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data())

    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]))
    assert "L'absence « Formation » est enregistrée." in page
    assert "du lundi 12 janvier 2026 à 14h00 au mardi 13 janvier 2026 à 12h00" in page
    absence = only_absence(db)
    assert (absence.weekdays, absence.first_day, absence.last_day) == (0, date(2026, 1, 12), date(2026, 1, 13))


def test_one_off_absence_without_last_day_lasts_one_day(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data(last_day="", start_time="09:00", end_time="12:00",
                                                                        weekdays=["3"], every_n_weeks="3"))
    assert response.status_code == 302
    absence = only_absence(db)
    assert (absence.first_day, absence.last_day, absence.weekdays, absence.every_n_weeks) == (
        date(2026, 1, 12), date(2026, 1, 12), 0, 1)
    assert "le lundi 12 janvier 2026 de 09h00 à 12h00" in text_of(client.get(response.headers["Location"]))


def test_one_off_absence_ending_before_it_starts_the_same_day_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data(last_day="2026-01-12"))
    assert_refused(response, db, "L'heure de fin doit être après l'heure de début.", model=Absence)


def test_one_off_absence_with_last_day_before_first_day_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data(last_day="2026-01-10"))
    assert_refused(response, db, "Le dernier jour ne peut pas être avant le premier jour.", model=Absence)


def test_recurring_absence_is_stored_with_its_days_and_frequency(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data(
        title="Réunion d'équipe", kind="recurrente", weekdays=["3"], every_n_weeks="2", last_day="",
        start_time="14:00", end_time="16:00"))
    assert response.status_code == 302
    absence = only_absence(db)
    assert (absence.weekdays, absence.every_n_weeks, absence.last_day) == (1 << 3, 2, None)
    page = text_of(client.get(response.headers["Location"]))
    assert "jeudi, toutes les 2 semaines, de 14h00 à 16h00, à partir du 12/01/2026" in page


def test_recurring_absence_without_weekday_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data(kind="recurrente", start_time="14:00", end_time="16:00"))
    assert_refused(response, db, "Cochez au moins un jour de la semaine.", model=Absence)


def test_recurring_absence_with_end_before_start_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data(kind="recurrente", weekdays=["0"]))
    assert_refused(response, db, "L'heure de fin doit être après l'heure de début.", model=Absence)


@pytest.mark.parametrize("kind", ["", "toujours"])
def test_unknown_absence_kind_is_refused(client, auth, db, world, kind):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data(kind=kind))
    assert_refused(response, db, "Choisissez un type d'absence.", model=Absence)


def test_absence_title_too_long_is_refused(client, auth, db, world):
    auth.login(world.agent)
    response = submit(client, new_absence_url(world.agent), absence_data(title="x" * 5000))
    assert_refused(response, db, "Le titre ne doit pas dépasser 160 caractères.", model=Absence)


def test_agent_edits_and_deletes_an_absence(client, auth, db, world, factories):
    absence = factories.AbsenceFactory(agent=world.agent, title="Congés", first_day=date(2026, 2, 2), last_day=date(2026, 2, 6))
    auth.login(world.agent)
    response = submit(client, f"/absences/{absence.id}/modifier", absence_data(title="Congés d'hiver", first_day="2026-02-09",
                                                                              last_day="2026-02-13", start_time="08:00",
                                                                              end_time="18:00"))
    assert response.status_code == 302
    assert "L'absence « Congés d'hiver » est modifiée." in text_of(client.get(response.headers["Location"]))
    assert (only_absence(db).title, only_absence(db).first_day) == ("Congés d'hiver", date(2026, 2, 9))

    url = f"/absences/{absence.id}/supprimer"
    confirmation = text_of(client.get(url))
    assert "Supprimer l'absence « Congés d'hiver » ?" in confirmation
    response = client.post(url, data={"csrf_token": csrf_token_from(confirmation)})
    assert response.status_code == 302 and count(db, Absence) == 0


def test_upcoming_absences_come_first_and_past_ones_are_set_apart(client, auth, world, factories):
    factories.AbsenceFactory(agent=world.agent, title="Congés de mars", first_day=date(2026, 3, 2), last_day=date(2026, 3, 6))
    factories.AbsenceFactory(agent=world.agent, title="Formation de janvier", first_day=date(2026, 1, 8), last_day=date(2026, 1, 8))
    factories.AbsenceFactory(agent=world.agent, title="Congés de Noël", first_day=date(2025, 12, 22), last_day=date(2026, 1, 2))
    auth.login(world.agent)
    page = text_of(client.get(f"/agents/{world.agent.id}/horaires"))

    assert page.index("Formation de janvier") < page.index("Congés de mars") < page.index("Absences passées (1)")
    assert page.index("Absences passées (1)") < page.index("Congés de Noël")


# --- Who may manage whose schedule ---------------------------------------------------------------------------------


def test_my_schedule_opens_the_signed_in_agents_schedule(client, auth, world):
    auth.login(world.agent)
    response = client.get("/horaires")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/agents/{world.agent.id}/horaires")
    page = text_of(client.get(response.headers["Location"]))
    assert "Mes horaires" in page
    assert 'id="agent-picker"' not in page  # nobody else to pick


def test_signed_out_visitor_is_sent_to_the_login_page(client, world):
    response = client.get(f"/agents/{world.agent.id}/horaires")
    assert response.status_code == 302 and "/connexion" in response.headers["Location"]


def test_agent_cannot_manage_a_colleagues_schedule(client, auth, db, world, factories):
    plage = existing_plage(factories, world, agent=world.colleague)
    absence = factories.AbsenceFactory(agent=world.colleague)
    auth.login(world.agent)
    token = csrf_token_from(text_of(client.get("/horaires", follow_redirects=True)))

    for url in (f"/agents/{world.colleague.id}/horaires", new_plage_url(world.colleague), f"/plages/{plage.id}/modifier",
                f"/plages/{plage.id}/supprimer", new_absence_url(world.colleague), f"/absences/{absence.id}/modifier",
                f"/absences/{absence.id}/supprimer"):
        assert client.get(url).status_code == 403, url
    assert client.post(new_plage_url(world.colleague), data=plage_data(world, csrf_token=token)).status_code == 403
    assert client.post(f"/plages/{plage.id}/supprimer", data={"csrf_token": token}).status_code == 403
    assert client.post(f"/absences/{absence.id}/supprimer", data={"csrf_token": token}).status_code == 403
    assert (count(db, PlageOuverture), count(db, Absence)) == (1, 1)


@pytest.mark.parametrize("manager", ["admin", "secretary"])
def test_admin_and_secretary_manage_the_schedule_of_agents_of_their_organisation(client, auth, db, world, manager):
    auth.login(getattr(world, manager))
    schedule = text_of(client.get(f"/agents/{world.agent.id}/horaires"))
    assert "Horaires de Claire Martin" in schedule
    assert "Martin Claire" in schedule and "Bernard Lucie" in schedule  # the agent picker
    assert "Ailleurs Paul" not in schedule

    response = submit(client, new_plage_url(world.agent), plage_data(world))
    assert response.status_code == 302
    assert only_plage(db).agent_id == world.agent.id
    response = submit(client, new_absence_url(world.agent), absence_data())
    assert response.status_code == 302
    assert only_absence(db).agent_id == world.agent.id


def test_agent_picker_leads_to_the_picked_agents_schedule(client, auth, world):
    auth.login(world.admin)
    response = client.get(f"/horaires?agent_id={world.colleague.id}")
    assert response.headers["Location"].endswith(f"/agents/{world.colleague.id}/horaires")


def test_schedule_of_another_organisation_is_not_found(client, auth, world, factories):
    plage = existing_plage(factories, world, agent=world.stranger, lieu=world.other_lieu, motifs=[world.other_motif])
    absence = factories.AbsenceFactory(agent=world.stranger)
    auth.login(world.admin)

    for url in (f"/agents/{world.stranger.id}/horaires", f"/horaires?agent_id={world.stranger.id}",
                new_plage_url(world.stranger), f"/plages/{plage.id}/modifier", f"/plages/{plage.id}/supprimer",
                new_absence_url(world.stranger), f"/absences/{absence.id}/modifier", f"/absences/{absence.id}/supprimer",
                "/agents/999999/horaires", "/plages/999999/modifier", "/absences/999999/supprimer"):
        assert client.get(url, follow_redirects=True).status_code == 404, url


def test_post_without_csrf_token_is_refused_and_stores_nothing(client, auth, db, world, factories):
    plage = existing_plage(factories, world, title="Gardée")
    auth.login(world.agent)

    for url, data in ((new_plage_url(world.agent), plage_data(world, weekdays=["4"])),
                      (f"/plages/{plage.id}/modifier", plage_data(world, title="Changée")),
                      (f"/plages/{plage.id}/supprimer", {}),
                      (new_absence_url(world.agent), absence_data())):
        response = client.post(url, data=data)
        assert response.status_code == 400, url
        assert "Le formulaire a expiré ou n'est pas valide." in text_of(response)
    assert only_plage(db).title == "Gardée"
    assert count(db, Absence) == 0
