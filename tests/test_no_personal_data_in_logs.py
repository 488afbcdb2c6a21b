"""No name, phone number or e-mail address of a family ever reaches the logs, whatever the level.

The main flows run end to end with every logger at DEBUG (Flask, werkzeug, Celery, the SDKs and Lapins' own): an
agent creates two families and books for one; its confirmation and reminder leave by SMS (the Twilio fake) and
e-mail (the SMTP fake); the family cancels from its link; the freed slot is offered to the other family, who
accepts; the first family cancels its other rdv by answering ANNULER to an SMS; an agent exports the first family's
data and an administrator erases it. Then no log record, message, arguments or traceback, names either family.

SQLAlchemy's engine loggers stay as SQLAlchemy sets them (WARNING): at INFO they echo every statement with its
parameters, which is what they are for; Lapins never turns them on (LOG_LEVEL does not reach them).
"""
from __future__ import annotations

import logging
import re
import traceback
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from lapins.models import (
    Channel, Message, MessageKind, MessageStatus, OfferStatus, Rdv, RdvStatus, Role, SlotOffer, Usager,
)
from lapins.notifications import outbox
from lapins.notifications.links import rdv_token
from tests.conftest import csrf_token_from
from tests.test_sms_replies import SENDER, inbound  # noqa: F401  (the signed inbound-SMS fixture, Twilio backend)

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)  # Monday 19 October 2026, 10:00 in Paris

FAMILY = {"first_name": "Ysaline", "last_name": "Kerbrat-Oyono", "phone": "06 71 23 45 98",
          "email": "ysaline.kerbrat@example.org"}
WAITING = {"first_name": "Gwenaëlle", "last_name": "Trouvé-Abalo", "phone": "07 81 22 33 44",
           "email": "gwen.trouve@example.org"}


def identifiers(person: dict) -> list[str]:
    """Every way the person could show up: names, the phone in E.164 and national forms, the e-mail address."""
    digits = re.sub(r"\D", "", person["phone"])  # "0671234598"
    return [person["first_name"], person["last_name"], person["email"], person["email"].split("@")[0],
            "+33" + digits[1:], "33" + digits[1:], digits, person["phone"], digits[1:],
            " ".join(digits[i:i + 2] for i in range(0, 10, 2)), ".".join(digits[i:i + 2] for i in range(0, 10, 2))]


FORBIDDEN = [value.casefold() for person in (FAMILY, WAITING) for value in identifiers(person)]


@pytest.fixture()
def every_logger_at_debug(caplog):
    caplog.set_level(logging.DEBUG)
    names = ["lapins", "flask", "flask.app", "werkzeug", "celery", "celery.app.trace", "celery.task", "kombu",
             "twilio", "urllib3", "smtplib", "flask_limiter", "flask_wtf", "wtforms", "babel", "phonenumbers"]
    names += [name for name in logging.root.manager.loggerDict if not name.startswith("sqlalchemy")]
    for name in sorted(set(names)):
        caplog.set_level(logging.DEBUG, logger=name)
        logger = logging.getLogger(name)
        if not logger.propagate and caplog.handler not in logger.handlers:
            logger.addHandler(caplog.handler)
    yield caplog
    for name in names:
        logger = logging.getLogger(name)
        if caplog.handler in logger.handlers:
            logger.removeHandler(caplog.handler)


# The stand-ins for the département's mail server and for Twilio log what they receive, as real ones would on
# their own machines: those records are not Lapins'.
FAKES = ("mail.log", "tests.")


def leaks(record: logging.LogRecord) -> list[str]:
    if record.name.startswith(FAKES):
        return []
    text = [record.getMessage(), repr(record.args), record.exc_text or "", record.stack_info or ""]
    if record.exc_info:
        text.append("".join(traceback.format_exception(*record.exc_info)))
    haystack = " ".join(text).casefold()
    return [value for value in FORBIDDEN if value in haystack]


@pytest.fixture()
def clinic(factories):
    organisation = factories.OrganisationFactory(territory__sms_sender=SENDER, territory__sms_takes_replies=True,
                                                 territory__timezone="Europe/Paris", name="PMI Quimper",
                                                 phone="+33298000000")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Kerfeunteun", phone="+33298000010")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson", duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 10, 1), motifs=[motif], start_time=time(8),
                           end_time=time(18), weekdays=0b1111111)
    return type("Clinic", (), dict(organisation=organisation, lieu=lieu, motif=motif, agent=agent, admin=admin))


def create_usager(client, person: dict) -> int:
    path = "/usagers/nouveau"
    data = {"csrf_token": csrf_token_from(client.get(path).get_data(as_text=True)), **person,
            "birth_date": "1991-06-14", "sms_consent": "y", "email_consent": "y"}
    response = client.post(path, data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


def book(client, clinic, usager_id: int, day: str, start: str) -> None:
    page = client.get(f"/rdvs/nouveau?usager_id={usager_id}&agent_id={clinic.agent.id}")
    response = client.post("/rdvs/nouveau", data={
        "csrf_token": csrf_token_from(page.get_data(as_text=True)), "usager_ids": [usager_id],
        "motif_id": clinic.motif.id, "lieu_id": clinic.lieu.id, "agent_ids": [clinic.agent.id], "day": day,
        "start_time": start, "duration": "", "notes": "",
        "confirm_unusual": "y"})  # the family's second rdv for this motif, on purpose
    assert response.status_code == 302, response.get_data(as_text=True)


def rows(db, statement):
    db.session.expire_all()
    return db.session.scalars(statement.execution_options(populate_existing=True)).all()


def test_the_main_flows_log_no_name_phone_or_email(client, auth, clinic, db, every_logger_at_debug, inbound,
                                                   smtp_app, smtp_server, twilio_fake):
    caplog = every_logger_at_debug
    with time_machine.travel(NOW, tick=False) as clock:
        # An agent creates both families and books two rdvs for the first; the confirmations leave at once.
        auth.login(clinic.agent)
        family_id, waiting_id = create_usager(client, FAMILY), create_usager(client, WAITING)
        book(client, clinic, family_id, "2026-10-22", "14:00")
        book(client, clinic, family_id, "2026-11-05", "10:00")
        first, second = rows(db, select(Rdv).order_by(Rdv.starts_at))
        client.post(f"/usagers/{waiting_id}/file-d-attente", data={
            "csrf_token": csrf_token_from(client.get(f"/usagers/{waiting_id}").get_data(as_text=True)),
            "motif_id": clinic.motif.id, "lieu_id": "", "priority": "1"})

        # The reminder of the first rdv, 48 hours before, by SMS and e-mail.
        clock.move_to(datetime(2026, 10, 20, 14, 0, tzinfo=PARIS))
        outbox.dispatch_due()
        reminders = rows(db, select(Message).where(Message.rdv_id == first.id, Message.kind == MessageKind.REMINDER))
        assert {(m.channel, m.status) for m in reminders} == {(Channel.SMS, MessageStatus.SENT),
                                                             (Channel.EMAIL, MessageStatus.SENT)}
        assert smtp_server.received and twilio_fake.messages

        # The family cancels it from its link, after the identity check (the agent's session has long expired).
        url = f"/r/{rdv_token(first.id)}"
        token = csrf_token_from(client.get(url).get_data(as_text=True))
        assert client.post(f"{url}/verifier", data={"csrf_token": token, "letters": "Kerb"}).status_code == 302
        token = csrf_token_from(client.get(url).get_data(as_text=True))
        assert client.post(f"{url}/annuler", data={"csrf_token": token, "reason": "",
                                                        "confirme": "oui"}).status_code == 302

        # Its slot is offered to the waiting family, who accepts it from the offer's SMS.
        [offer] = rows(db, select(SlotOffer))
        [sms] = rows(db, select(Message).where(Message.offer_id == offer.id, Message.channel == Channel.SMS))
        link = re.search(r"/o/[0-9a-f]+-[A-Za-z0-9_-]{10}", sms.body).group(0)
        token = csrf_token_from(client.get(link).get_data(as_text=True))
        assert client.post(f"{link}/accepter", data={"csrf_token": token}).status_code == 302
        assert rows(db, select(SlotOffer))[0].status == OfferStatus.ACCEPTED

        # The first family answers ANNULER to an SMS: its other rdv is cancelled.
        assert "est annulé" in inbound("ANNULER", from_="+33671234598")
        assert rows(db, select(Rdv).where(Rdv.id == second.id))[0].status == RdvStatus.EXCUSED

        # An agent exports its data; an administrator erases it.
        auth.login(clinic.agent)
        assert client.get(f"/usagers/{family_id}/donnees.json").status_code == 200
        assert client.get(f"/usagers/{family_id}/donnees").status_code == 200
        auth.logout()
        auth.login(clinic.admin)
        erase_url = f"/usagers/{family_id}/effacer"
        token = csrf_token_from(client.get(erase_url).get_data(as_text=True))
        response = client.post(erase_url, data={"csrf_token": token, "last_name": FAMILY["last_name"],
                                                "confirm": "y"})
        assert response.status_code == 302
        assert not rows(db, select(Usager).where(Usager.id == family_id))

    logged = {record.getMessage() for record in caplog.records}
    # The flows did log (so the capture works): the SMS, the e-mails, the cancellation, the offer, the erasure.
    assert any("accepted by Twilio" in line for line in logged)
    assert any("accepted by the SMTP server" in line for line in logged)
    assert any("cancelled by the family" in line for line in logged)
    assert any("offer" in line and "accepted" in line for line in logged)
    assert any(line.startswith("Erasure by agent") for line in logged)
    leaked = [(record.name, record.levelname, record.getMessage()[:200], found)
              for record in caplog.records if (found := leaks(record))]
    assert leaked == []


def test_an_unexpected_database_error_logs_where_it_happened_not_the_familys_data(client, auth, clinic,
                                                                                 every_logger_at_debug, monkeypatch):
    """A bug that makes an INSERT fail: the traceback is logged, without the statement's parameters nor, on
    PostgreSQL, the failing row the server quotes in its DETAIL."""
    from lapins.agenda import usagers

    fill = usagers._fill

    def buggy_fill(usager, form):
        fill(usager, form)
        usager.first_name = None  # NOT NULL: the INSERT fails, its parameters hold the whole family

    monkeypatch.setattr(usagers, "_fill", buggy_fill)
    with time_machine.travel(NOW, tick=False):
        auth.login(clinic.agent)
        path = "/usagers/nouveau"
        response = client.post(path, data={"csrf_token": csrf_token_from(client.get(path).get_data(as_text=True)),
                                           **FAMILY, "sms_consent": "y", "email_consent": "y"})
    assert response.status_code == 500
    [error] = [record for record in every_logger_at_debug.records if record.getMessage().startswith("unhandled")]
    assert "in new_usager" in error.getMessage() and "IntegrityError" in error.getMessage()  # where, and what
    assert "usagers.first_name" in error.getMessage() or '"first_name"' in error.getMessage()
    assert [found for record in every_logger_at_debug.records if (found := leaks(record))] == []


def test_the_development_servers_request_lines_leave_out_the_query_string(app, auth, client, clinic,
                                                                          every_logger_at_debug):
    """`make run` serves with werkzeug, which logs every request line: a usager search must not put the family's
    name or phone number there."""
    import threading
    import urllib.request
    from urllib.parse import urlencode

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for query in (f"{FAMILY['first_name']} {FAMILY['last_name']}", FAMILY["phone"], FAMILY["email"]):
            url = f"http://127.0.0.1:{server.server_port}/usagers?{urlencode({'q': query})}"
            with urllib.request.urlopen(url) as response:  # signed out: sent to the login page, still logged
                assert response.status == 200
    finally:
        server.shutdown()
        thread.join(timeout=5)
    lines = [record.getMessage() for record in every_logger_at_debug.records if record.name == "werkzeug"]
    assert any("GET /usagers?… HTTP/1.1" in line and line.endswith(" 302 -") for line in lines), lines
    assert any("GET /connexion?… HTTP/1.1" in line for line in lines), lines  # its `next` held the search too
    assert [found for record in every_logger_at_debug.records if (found := leaks(record))] == []


def test_a_task_failing_on_the_database_logs_where_and_why_not_the_familys_data(app, db, factories,
                                                                                 every_logger_at_debug):
    """Celery logs a failed task with its exception: PostgreSQL's would quote the duplicate key, here an e-mail."""
    from lapins.infra.celery_app import TaskDatabaseError
    from lapins.models import Agent

    factories.AgentFactory(email=FAMILY["email"])
    db.session.commit()

    @app.extensions["celery"].task(name="tests.privacy.duplicate_agent")
    def duplicate_agent():
        db.session.add(Agent(email=FAMILY["email"], first_name=FAMILY["first_name"], last_name=FAMILY["last_name"]))
        db.session.commit()

    result = duplicate_agent.apply()
    assert result.failed() and isinstance(result.result, TaskDatabaseError)
    [failure] = [record for record in every_logger_at_debug.records
                 if record.name == "celery.app.trace" and record.levelno >= logging.ERROR]
    logged = failure.getMessage() + "".join(traceback.format_exception(*failure.exc_info))
    assert "in duplicate_agent" in logged  # where, and what: the constraint, named by SQLite or PostgreSQL
    assert "UNIQUE constraint failed: agents.email" in logged or 'unique constraint "uq_agents_email"' in logged
    assert [found for record in every_logger_at_debug.records if (found := leaks(record))] == []
