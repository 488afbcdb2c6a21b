"""J-3 + J-1 reminders for new territories, never in the night (earlier, not later), only those still ahead."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins.booking import book_rdv, move_rdv
from lapins.models import Channel, Message, MessageKind, MessageStatus, Role, Territory
from lapins.notifications import timing
from lapins.onboarding.territory import create_territory

UTC = timezone.utc
PARIS, REUNION, GUADELOUPE = ZoneInfo("Europe/Paris"), ZoneInfo("Indian/Reunion"), ZoneInfo("America/Guadeloupe")
# Monday 19 October 2026, 10:00 in Paris: the week before the change to winter time (Sunday 25 October, 03:00).
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)


def local(tz: ZoneInfo, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=tz).astimezone(UTC)


@pytest.fixture()
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def new_territory_clinic(factories, tz: str = "Europe/Paris", number: str = "92"):
    """A territory with the settings a new one gets (Territory's defaults), unlike the factory's older ones."""
    territory = factories.TerritoryFactory(timezone=tz, number=number, reminder_offsets=timing.DEFAULT_REMINDER_OFFSETS,
                                           quiet_hours_start=time(20, 0), quiet_hours_end=time(8, 30))
    organisation = factories.OrganisationFactory(territory=territory, name="PMI Centre")
    lieu = factories.LieuFactory(organisation=organisation, name="PMI du Centre", address="1 place de la Mairie")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(6),
                           end_time=time(22), weekdays=0b1111111)
    mother = factories.UsagerFactory(territory=territory, first_name="Aïcha", phone="+33612345678", sms_consent=True,
                                     email="aicha@example.fr", email_consent=True, organisations=[organisation])
    return type("Clinic", (), dict(territory=territory, lieu=lieu, motif=motif, agent=agent, mother=mother))


def book(clinic, starts_at):
    return book_rdv(actor=clinic.agent, motif=clinic.motif, agents=[clinic.agent], usagers=[clinic.mother],
                    starts_at=starts_at, lieu=clinic.lieu)


def reminders(db, rdv_id: int, channel: Channel = Channel.SMS, status=MessageStatus.PENDING) -> list[datetime]:
    return list(db.session.scalars(
        select(Message.due_at).where(Message.rdv_id == rdv_id, Message.kind == MessageKind.REMINDER,
                                     Message.channel == channel, Message.status == status)
        .order_by(Message.due_at).execution_options(populate_existing=True)))


def test_a_new_territory_reminds_at_j3_and_j1_and_is_quiet_until_half_past_eight(app, db):
    create_territory(number="59", name="Nord", timezone="Europe/Paris", admin_email="admin@lenord.fr")
    territory = db.session.scalar(select(Territory))
    assert timing.parse_offsets(territory.reminder_offsets) == [72, 24]
    assert (territory.quiet_hours_start, territory.quiet_hours_end) == (time(20, 0), time(8, 30))


def test_the_create_command_says_why_two_reminders(app, db):
    result = app.test_cli_runner().invoke(args=[
        "territory", "create", "--number", "62", "--name", "Pas-de-Calais", "--timezone", "Europe/Paris",
        "--admin-email", "admin@pasdecalais.fr"])
    assert result.exit_code == 0, result.output
    assert "J-3 et J-1" in result.output and "Steiner" in result.output and "4,4 %" in result.output


def test_paris_the_week_of_the_change_to_winter_time_keeps_the_local_clock(factories, db, clock):
    clinic = new_territory_clinic(factories)
    rdv = book(clinic, local(PARIS, 10, 27, 10, 0))  # Tuesday after the change

    j3, j1 = reminders(db, rdv.id)
    assert j3.astimezone(PARIS).strftime("%a %d %H:%M %Z") == "Sat 24 10:00 CEST"
    assert j1.astimezone(PARIS).strftime("%a %d %H:%M %Z") == "Mon 26 10:00 CET"
    assert j1 - j3 == timedelta(hours=49)  # 48 h on the wall clock, 49 real hours across the change
    assert reminders(db, rdv.id, Channel.EMAIL) == [j3, j1]


def test_paris_the_week_of_the_change_to_summer_time(factories, db):
    with time_machine.travel(local(PARIS, 3, 23, 10, 0), tick=False):
        clinic = new_territory_clinic(factories)
        rdv = book(clinic, local(PARIS, 3, 30, 9, 0))  # Monday after Sunday 29 March

        j3, j1 = reminders(db, rdv.id)
    assert j3.astimezone(PARIS).strftime("%a %d %H:%M %Z") == "Fri 27 09:00 CET"
    assert j1.astimezone(PARIS).strftime("%a %d %H:%M %Z") == "Sun 29 09:00 CEST"


@pytest.mark.parametrize("tz, number, wall, utc_hour", [
    (REUNION, "974", 9, 5),  # UTC+4 all year: Paris's change moves nothing there
    (GUADELOUPE, "971", 9, 13),  # UTC-4 all year
])
def test_overseas_territories_the_week_paris_changes_time(factories, db, clock, tz, number, wall, utc_hour):
    clinic = new_territory_clinic(factories, tz=tz.key, number=number)
    rdv = book(clinic, local(tz, 10, 27, wall))

    j3, j1 = reminders(db, rdv.id)
    assert (j3, j1) == (datetime(2026, 10, 24, utc_hour, tzinfo=UTC), datetime(2026, 10, 26, utc_hour, tzinfo=UTC))
    assert [when.astimezone(tz).hour for when in (j3, j1)] == [wall, wall]


def test_a_reminder_due_in_the_quiet_hours_goes_the_evening_before_never_later(factories, db, clock):
    clinic = new_territory_clinic(factories)
    rdv = book(clinic, local(PARIS, 10, 29, 8, 0))  # Thursday 08:00: J-1 and J-3 would fall at 08:00, still quiet

    assert reminders(db, rdv.id) == [local(PARIS, 10, 25, 19, 30), local(PARIS, 10, 27, 19, 30)]
    assert reminders(db, rdv.id, Channel.EMAIL) == [local(PARIS, 10, 26, 8, 0), local(PARIS, 10, 28, 8, 0)]


def test_an_rdv_booked_30_hours_ahead_gets_only_the_j1_reminder(factories, db, clock):
    clinic = new_territory_clinic(factories)
    rdv = book(clinic, NOW + timedelta(hours=30))  # Tuesday 16:00

    assert reminders(db, rdv.id) == [local(PARIS, 10, 19, 16, 0)]
    confirmation = db.session.scalar(select(Message).where(Message.rdv_id == rdv.id,
                                                           Message.kind == MessageKind.CREATED,
                                                           Message.channel == Channel.SMS))
    assert confirmation.due_at == NOW


def test_booked_at_night_when_the_evening_before_is_past_the_reminder_is_dropped(factories, db):
    with time_machine.travel(local(PARIS, 10, 19, 22, 0), tick=False):  # Monday 22:00, quiet hours
        clinic = new_territory_clinic(factories)
        rdv = book(clinic, local(PARIS, 10, 21, 7, 0))  # Wednesday 07:00: J-1 at Tuesday 07:00, quiet too

        assert reminders(db, rdv.id) == []  # not Monday 19:30 (past), not Tuesday 08:30 (later): none
        assert reminders(db, rdv.id, Channel.EMAIL) == [local(PARIS, 10, 20, 7, 0)]


def test_a_move_drops_the_old_reminders_and_plans_the_new_ones(factories, db, clock):
    clinic = new_territory_clinic(factories)
    rdv = book(clinic, local(PARIS, 10, 27, 10, 0))
    move_rdv(actor=clinic.agent, rdv=rdv, starts_at=local(PARIS, 11, 3, 14, 0))

    assert reminders(db, rdv.id) == [local(PARIS, 10, 31, 14, 0), local(PARIS, 11, 2, 14, 0)]
    skipped = db.session.scalars(select(Message).where(Message.rdv_id == rdv.id, Message.kind == MessageKind.REMINDER,
                                                       Message.status == MessageStatus.SKIPPED)).all()
    assert len(skipped) == 4  # J-3 and J-1, SMS and e-mail, of the old time
    assert {message.error for message in skipped} == {"Rendez-vous modifié entre-temps"}


def test_reminder_time_keeps_an_overnight_window_earlier_across_midnight():
    quiet = dict(tz=PARIS, quiet_start=time(20), quiet_end=time(8, 30))
    now = local(PARIS, 10, 19, 10, 0)
    assert timing.reminder_time(local(PARIS, 10, 21, 23, 0), now=now, **quiet) == local(PARIS, 10, 21, 19, 30)
    assert timing.reminder_time(local(PARIS, 10, 22, 2, 0), now=now, **quiet) == local(PARIS, 10, 21, 19, 30)
    assert timing.reminder_time(local(PARIS, 10, 22, 8, 30), now=now, **quiet) == local(PARIS, 10, 22, 8, 30)
    # Between the evening slot and the quiet hours: now, still before the night.
    late = local(PARIS, 10, 21, 19, 45)
    assert timing.reminder_time(local(PARIS, 10, 22, 7, 0), now=late, **quiet) == late
    assert timing.reminder_time(now - timedelta(minutes=1), now=now, **quiet) is None


def test_the_settings_page_says_why(client, auth, factories, db):
    clinic = new_territory_clinic(factories)
    admin = factories.AgentFactory(organisation=clinic.lieu.organisation, organisation__role=Role.ADMIN)
    auth.login(admin)
    page = client.get(f"/territoires/{clinic.territory.id}/parametres")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Steiner" in text and "J-3 et J-1" in text and "20,5 %" in text


def test_the_migration_leaves_an_existing_territorys_reminders_as_they_were(empty_database_url):
    """Upgrading keeps an existing territory's one reminder 48 h before and its quiet hours; the new settings start
    as the territory behaved before (every reminder asks OUI where replies are taken; no cost sentence)."""
    from flask_migrate import downgrade, upgrade

    from lapins import create_app
    from lapins.infra.extensions import db

    app = create_app("testing", SQLALCHEMY_DATABASE_URI=empty_database_url)
    with app.app_context():
        upgrade(revision="6f7a8b9c0d12")  # the release before issue 18
        with db.engine.begin() as connection:
            connection.execute(db.text("INSERT INTO territories (number, name, timezone, agenda_stamp) VALUES "
                                       "('01', 'Ain', 'Europe/Paris', 'a1b2c3d4e5f60718')"))
        upgrade()
        territory = db.session.scalar(select(Territory))
        assert territory.reminder_offsets == "48"
        assert (territory.quiet_hours_start, territory.quiet_hours_end) == (time(20, 0), time(8, 0))
        assert territory.sms_confirm_everyone is True
        assert (territory.sms_cost_note, territory.noshow_baseline_bp, territory.experiment_started_at) == (
            None, None, None)
        db.session.remove()
        downgrade(revision="base")
        db.engine.dispose()
