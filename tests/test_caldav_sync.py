"""CalDAV, both ways, against a real Radicale server on 127.0.0.1 (tests/radicale_server.py): the agent connects their
calendar on the settings page; bookings, moves and cancellations are written there through the durable queue; their
own busy events take free slots away. Bad servers and a server stopped mid-sync lose nothing and duplicate nothing."""
from __future__ import annotations

import html
import json
import threading
from datetime import datetime, time, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import icalendar
import pytest
import time_machine
from sqlalchemy import func, select

from lapins import booking
from lapins.calendars import busy, ics, push
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.models import RdvStatus, Role
from lapins.models.calendars import CaldavAccount, CaldavPush, PushStatus
from lapins.slots import availability
from tests import services
from tests.conftest import _start_or_give_up, csrf_token_from
from tests.radicale_server import PASSWORD, USER, RadicaleServer

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)  # Monday 09:00 in Paris
WEDNESDAY_10 = datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc)  # 10:00 in Paris


@pytest.fixture()
def radicale():
    server = RadicaleServer()
    _start_or_give_up("Radicale", server.start)
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture()
def office(factories):
    organisation = factories.OrganisationFactory(name="PMI Belleville")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=NOW.date(), motifs=[motif], start_time=time(9),
                           end_time=time(12), weekdays=0b0011111)
    family = factories.UsagerFactory(territory=organisation.territory, last_name="Durand")

    def rdv(starts_at: datetime = WEDNESDAY_10):
        return booking.book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[family], lieu=lieu,
                                starts_at=starts_at)

    return type("Office", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent, family=family,
                                   rdv=staticmethod(rdv)))


def connect(client, auth, agent, url: str, password: str = PASSWORD):
    auth.login(agent)
    token = csrf_token_from(client.get("/preferences/agendas").get_data(as_text=True))
    return client.post("/preferences/agendas/caldav",
                       data={"csrf_token": token, "url": url, "username": USER, "password": password})


def server_events(radicale) -> dict[str, icalendar.Event]:
    return {uid: icalendar.Calendar.from_ical(data).walk("VEVENT")[0] for uid, data in radicale.events().items()}


def settings_page(client) -> str:
    return html.unescape(client.get("/preferences/agendas").get_data(as_text=True))


def test_booking_moving_and_cancelling_are_written_to_the_agents_calendar(client, auth, office, radicale):
    answer = connect(client, auth, office.agent, radicale.make_calendar())
    assert answer.status_code == 302
    account = db.session.scalar(select(CaldavAccount))
    assert PASSWORD not in account.password_encrypted and crypto.decrypt(account.password_encrypted) == PASSWORD

    rdv = office.rdv()
    events = server_events(radicale)
    assert list(events) == [ics.rdv_uid(rdv.id)]
    event = events[ics.rdv_uid(rdv.id)]
    assert event["DTSTART"].dt == WEDNESDAY_10
    assert str(event["SUMMARY"]) == "RDV PMI — Centre PMI Belleville"
    assert "Durand" not in radicale.events()[ics.rdv_uid(rdv.id)].decode()

    booking.move_rdv(actor=office.agent, rdv=rdv, starts_at=WEDNESDAY_10 + timedelta(hours=1))
    events = server_events(radicale)
    assert list(events) == [ics.rdv_uid(rdv.id)]
    assert events[ics.rdv_uid(rdv.id)]["DTSTART"].dt == WEDNESDAY_10 + timedelta(hours=1)

    booking.cancel_rdv(actor=office.agent, rdv=rdv, status=RdvStatus.REVOKED, reason=None)
    assert server_events(radicale) == {}
    assert db.session.scalar(select(func.count()).select_from(CaldavPush)
                             .where(CaldavPush.status != PushStatus.DONE)) == 0
    page = settings_page(client)
    assert "Dernière synchronisation réussie" in page and "Pas encore" not in page


def test_connecting_writes_the_rdvs_already_booked(client, auth, office, radicale):
    rdv = office.rdv()
    connect(client, auth, office.agent, radicale.make_calendar())
    assert list(server_events(radicale)) == [ics.rdv_uid(rdv.id)]


class _Answering(BaseHTTPRequestHandler):
    status, body, content_type = 500, b"oops", "text/plain"

    def _answer(self):
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_PROPFIND = do_PUT = do_REPORT = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture()
def odd_server():
    """A loopback HTTP server that answers every request with the given status and body."""
    servers = []

    def start(status: int, body: bytes, content_type: str) -> str:
        handler = type("Handler", (_Answering,), dict(status=status, body=body, content_type=content_type))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/agent/lapins/"

    yield start
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize("case, expected", [
    ("wrong password", "refuse l'identifiant ou le mot de passe"),
    ("vanished calendar", "Aucun agenda à cette adresse"),
    ("nobody listening", "injoignable"),
    ("server error", "erreur (HTTP 5xx)"),
    ("html page", "n'est pas celle d'un agenda CalDAV"),
    ("not a url", "doit commencer par https://"),
])
def test_a_bad_calendar_is_refused_with_a_clear_message_and_nothing_stored(client, auth, office, radicale,
                                                                           odd_server, case, expected):
    radicale.make_calendar()
    url, password = {
        "wrong password": (radicale.calendar_url(), "pas-le-bon"),
        "vanished calendar": (radicale.calendar_url("supprime"), PASSWORD),
        "nobody listening": (f"http://127.0.0.1:{services.free_port()}/agent/lapins/", PASSWORD),
        "server error": (odd_server(500, b"Internal Server Error", "text/plain"), PASSWORD),
        "html page": (odd_server(200, b"<html><body>Bienvenue</body></html>", "text/html"), PASSWORD),
        "not a url": ("ftp:/nulle-part", PASSWORD),
    }[case]
    answer = connect(client, auth, office.agent, url, password)
    assert answer.status_code == 422
    assert expected in html.unescape(answer.get_data(as_text=True))
    assert db.session.scalar(select(func.count()).select_from(CaldavAccount)) == 0
    rdv = office.rdv()  # the agenda works as before
    assert rdv.id is not None


def test_a_calendar_that_breaks_later_shows_the_error_and_leaves_the_agenda_alone(client, auth, office, radicale):
    connect(client, auth, office.agent, radicale.make_calendar())
    account = db.session.scalar(select(CaldavAccount))
    account.password_encrypted = crypto.encrypt("change-chez-le-fournisseur")
    db.session.commit()
    rdv = office.rdv()
    assert rdv.id is not None and db.session.get(type(rdv), rdv.id).is_live
    assert "refuse l'identifiant ou le mot de passe" in settings_page(client)
    assert server_events(radicale) == {}


def test_a_server_stopped_mid_sync_loses_nothing_and_duplicates_nothing(client, auth, office, radicale,
                                                                       frozen_time):
    connect(client, auth, office.agent, radicale.make_calendar())
    first = office.rdv()
    radicale.stop()
    second = office.rdv(WEDNESDAY_10 + timedelta(hours=1))
    booking.move_rdv(actor=office.agent, rdv=first, starts_at=WEDNESDAY_10 - timedelta(minutes=30))
    assert "injoignable" in settings_page(client)
    assert push.pending_count(db.session.scalar(select(CaldavAccount.id))) == 2
    push.deliver_due()  # the beat comes while it is still down: nothing is due yet (backoff), nothing lost
    radicale.start()
    frozen_time.shift(timedelta(minutes=2))
    push.deliver_due()
    push.deliver_due()  # a repeat writes nothing twice
    events = server_events(radicale)
    assert sorted(events) == sorted([ics.rdv_uid(first.id), ics.rdv_uid(second.id)])
    assert events[ics.rdv_uid(first.id)]["DTSTART"].dt == WEDNESDAY_10 - timedelta(minutes=30)
    assert push.pending_count(db.session.scalar(select(CaldavAccount.id))) == 0


def test_a_write_repeated_after_a_worker_died_leaves_one_event(client, auth, office, radicale):
    connect(client, auth, office.agent, radicale.make_calendar())
    rdv = office.rdv()
    # The worker wrote it, then died before marking its row done: the row is due again and written again.
    row = db.session.scalars(select(CaldavPush).where(CaldavPush.rdv_id == rdv.id)).one()
    row.status, row.done_at = PushStatus.PENDING, None
    db.session.commit()
    push.deliver_due()
    assert list(server_events(radicale)) == [ics.rdv_uid(rdv.id)]


def _busy_event(uid: str, start: datetime, end: datetime, summary: str = "Dentiste de Claire") -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Agenda perso//FR\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260301T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
            f"DTEND:{end:%Y%m%dT%H%M%SZ}\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def slots_on_wednesday(office) -> set[datetime]:
    territory = office.organisation.territory
    return {slot.starts_at for slot in availability.free_slots_between(
        territory=territory, motif=office.motif, start=WEDNESDAY_10 - timedelta(hours=1),
        end=WEDNESDAY_10 + timedelta(hours=3))}


def test_a_busy_event_of_the_agents_calendar_takes_the_slot_and_its_deletion_frees_it(client, auth, office,
                                                                                      radicale):
    import caldav

    connect(client, auth, office.agent, radicale.make_calendar())
    own = office.rdv(WEDNESDAY_10 + timedelta(hours=1))  # written by Lapins: never read back as busy
    assert WEDNESDAY_10 in slots_on_wednesday(office)
    calendar = caldav.DAVClient(url=radicale.base_url, username=USER, password=PASSWORD).calendar(
        url=radicale.calendar_url())
    personal = calendar.save_event(_busy_event("perso-1", WEDNESDAY_10, WEDNESDAY_10 + timedelta(minutes=30)))
    assert busy.read_all() == {"unchanged": 0, "read": 1, "failed": 0}
    assert WEDNESDAY_10 not in slots_on_wednesday(office)
    assert WEDNESDAY_10 + timedelta(minutes=30) in slots_on_wednesday(office)
    blocks = db.session.execute(select(busy.BusyBlock.starts_at, busy.BusyBlock.ends_at)).all()
    assert blocks == [(WEDNESDAY_10, WEDNESDAY_10 + timedelta(minutes=30))]  # its own rdv is not a busy block
    assert own.id is not None
    agenda = client.get(f"/agenda/api/agents/{office.agent.id}/evenements",
                        query_string={"start": "2026-03-02", "end": "2026-03-09"}).get_json()
    shown = [event for event in agenda if event["title"] == "Occupé (agenda personnel)"]
    assert [(event["start"], event["end"]) for event in shown] == [("2026-03-04T10:00:00", "2026-03-04T10:30:00")]
    assert "Dentiste" not in json.dumps(agenda)
    assert busy.read_all()["unchanged"] == 1  # the sync token says nothing changed: nothing read
    personal.delete()
    busy.read_all()
    assert WEDNESDAY_10 in slots_on_wednesday(office)


def test_busy_blocks_keep_no_title(client, auth, office, radicale):
    import caldav

    connect(client, auth, office.agent, radicale.make_calendar())
    calendar = caldav.DAVClient(url=radicale.base_url, username=USER, password=PASSWORD).calendar(
        url=radicale.calendar_url())
    calendar.save_event(_busy_event("perso-2", WEDNESDAY_10, WEDNESDAY_10 + timedelta(hours=1)))
    busy.read_all()
    row = db.session.scalars(select(busy.BusyBlock)).one()
    assert "Dentiste" not in repr(row.__dict__)


def _recurring_busy(uid: str, start: datetime, minutes: int, count: int) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Agenda perso//FR\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260301T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
            f"DTEND:{start + timedelta(minutes=minutes):%Y%m%dT%H%M%SZ}\r\nRRULE:FREQ=WEEKLY;COUNT={count}\r\n"
            "SUMMARY:Cours de yoga\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def _all_day_busy(uid: str, day) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Agenda perso//FR\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260301T000000Z\r\nDTSTART;VALUE=DATE:{day:%Y%m%d}\r\n"
            f"DTEND;VALUE=DATE:{day + timedelta(days=1):%Y%m%d}\r\nSUMMARY:Congé\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def _personal_calendar(radicale):
    import caldav

    return caldav.DAVClient(url=radicale.base_url, username=USER, password=PASSWORD).calendar(
        url=radicale.calendar_url())


def test_a_weekly_busy_event_takes_each_occurrence_and_an_all_day_one_the_whole_day(client, auth, office, radicale):
    connect(client, auth, office.agent, radicale.make_calendar())
    calendar = _personal_calendar(radicale)
    calendar.save_event(_recurring_busy("yoga", WEDNESDAY_10, 30, 2))
    calendar.save_event(_all_day_busy("conge", (WEDNESDAY_10 + timedelta(days=1)).date()))
    busy.read_all()
    territory = office.organisation.territory
    free = {slot.starts_at for slot in availability.free_slots_between(
        territory=territory, motif=office.motif, start=NOW, end=NOW + timedelta(days=21))}
    assert WEDNESDAY_10 not in free and WEDNESDAY_10 + timedelta(days=7) not in free
    assert WEDNESDAY_10 + timedelta(days=14) in free  # COUNT=2: the third Wednesday is free
    thursday = WEDNESDAY_10 + timedelta(days=1)
    assert not any(thursday.date() == slot.date() for slot in free)
    assert WEDNESDAY_10 + timedelta(days=8) in free  # the next Thursday is not on leave


def test_a_busy_read_that_fails_keeps_the_blocks_and_says_why(client, auth, office, radicale):
    connect(client, auth, office.agent, radicale.make_calendar())
    _personal_calendar(radicale).save_event(_busy_event("perso-3", WEDNESDAY_10, WEDNESDAY_10 + timedelta(hours=1)))
    busy.read_all()
    radicale.stop()
    assert busy.read_all() == {"unchanged": 0, "read": 0, "failed": 1}
    assert WEDNESDAY_10 not in slots_on_wednesday(office)
    assert "Lecture des indisponibilités : Le serveur d'agenda est injoignable" in settings_page(client)


def test_an_agent_taken_off_an_rdv_has_it_removed_from_their_calendar(client, auth, office, radicale, factories):
    connect(client, auth, office.agent, radicale.make_calendar())
    colleague = factories.AgentFactory(organisation=office.organisation, organisation__role=Role.AGENT)
    rdv = office.rdv()
    assert list(server_events(radicale)) == [ics.rdv_uid(rdv.id)]
    booking.move_rdv(actor=office.agent, rdv=rdv, starts_at=rdv.starts_at, agents=[colleague], force=True)
    assert server_events(radicale) == {}


def test_one_row_per_change_each_written_once_and_one_worker_per_calendar(client, auth, office, radicale):
    connect(client, auth, office.agent, radicale.make_calendar())
    rdv = office.rdv()
    booking.move_rdv(actor=office.agent, rdv=rdv, starts_at=WEDNESDAY_10 + timedelta(hours=1))
    rows = db.session.scalars(select(CaldavPush).where(CaldavPush.rdv_id == rdv.id)).all()
    assert [row.status for row in rows] == [PushStatus.DONE, PushStatus.DONE]
    assert push.deliver_due() == {"written": 0, "deleted": 0, "retry": 0, "failed": 0}
    account_id = db.session.scalar(select(CaldavAccount.id))
    assert push._claim(account_id, NOW) is True
    assert push._claim(account_id, NOW) is False  # a second worker leaves it to the first


def test_disconnecting_stops_writing_and_frees_the_busy_slots(client, auth, office, radicale):
    connect(client, auth, office.agent, radicale.make_calendar())
    _personal_calendar(radicale).save_event(_busy_event("perso-4", WEDNESDAY_10, WEDNESDAY_10 + timedelta(hours=1)))
    busy.read_all()
    assert WEDNESDAY_10 not in slots_on_wednesday(office)
    token = csrf_token_from(client.get("/preferences/agendas").get_data(as_text=True))
    assert client.post("/preferences/agendas/caldav/deconnecter", data={"csrf_token": token}).status_code == 302
    assert WEDNESDAY_10 in slots_on_wednesday(office)
    office.rdv(WEDNESDAY_10 + timedelta(hours=1))
    assert list(server_events(radicale)) == ["perso-4"]  # the agent's own event, and nothing written by Lapins


def test_plain_http_calendars_are_refused_where_the_setting_says_so(client, auth, office, radicale, app):
    app.config["CALDAV_ALLOW_HTTP"] = False
    try:
        answer = connect(client, auth, office.agent, radicale.make_calendar())
    finally:
        app.config["CALDAV_ALLOW_HTTP"] = True
    assert answer.status_code == 422
    assert "doit commencer par https://" in html.unescape(answer.get_data(as_text=True))
    assert db.session.scalar(select(func.count()).select_from(CaldavAccount)) == 0


def test_a_server_stopped_in_the_middle_of_a_batch_loses_nothing_and_duplicates_nothing(client, auth, office,
                                                                                       radicale, factories,
                                                                                       frozen_time):
    connect(client, auth, office.agent, radicale.make_calendar())
    account_id = db.session.scalar(select(CaldavAccount.id))
    rdvs = [factories.RdvFactory(motif=office.motif, lieu=office.lieu, agents=[office.agent], usagers=[office.family],
                                 starts_at=WEDNESDAY_10 + timedelta(days=n // 6, minutes=30 * (n % 6)))
            for n in range(60)]
    db.session.add_all(CaldavPush(account_id=account_id, rdv_id=rdv.id) for rdv in rdvs)
    db.session.commit()
    stopper = threading.Timer(0.4, radicale.stop)  # while the worker is writing the batch
    stopper.start()
    first = push.deliver_due()
    stopper.join()
    assert first["retry"] == 1 and first["written"] < 60, first  # it was cut off part-way
    radicale.start()
    # Every change marked done is on the server; the one in flight when it stopped may be there too.
    assert len(radicale.events()) in (first["written"], first["written"] + 1)
    assert push.pending_count(account_id) == 60 - first["written"]
    frozen_time.shift(timedelta(minutes=2))
    push.deliver_due()
    events = radicale.events()  # raises on two objects for one UID
    assert sorted(events) == sorted(ics.rdv_uid(rdv.id) for rdv in rdvs)
    assert push.pending_count(account_id) == 0
