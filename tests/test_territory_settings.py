"""The territory settings page: who may open it, every setting checked in French, Twilio credentials encrypted and
used for the territory's SMS and webhooks, and the wording of the SMS previewed and kept within one segment."""
from __future__ import annotations

import html as html_text
import re
import http.client
import threading
from datetime import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from lapins.infra.extensions import db as _db
from lapins.models import Channel, MessageKind, MessageStatus, Role, Territory
from lapins.notifications import outbox
from lapins.notifications.gsm import is_gsm7, segments
from lapins.notifications.webhooks import INBOUND_PATH, STATUS_PATH
from tests.conftest import csrf_token_from
from tests.fakes.twilio import TwilioFake
from tests.test_outbox import PARIS, book, local, make_clinic, messages

OWN_SID = "AC" + "0123456789abcdef" * 2
OWN_TOKEN = "feedc0de" * 4
OTHER_TOKEN = "badc0ffe" * 4
PUBLIC_URL = "https://rdv.pmi.example.fr"


@pytest.fixture()
def clinic(factories, clock):
    return make_clinic(factories)


@pytest.fixture()
def clock():
    import time_machine

    from tests.test_outbox import NOW

    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def url(territory: Territory, suffix: str = "") -> str:
    return f"/territoires/{territory.id}/parametres{suffix}"


def admin_of(factories, clinic):
    return factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.ADMIN)


@pytest.fixture()
def as_admin(client, auth, factories, clinic):
    assert auth.login(admin_of(factories, clinic)).status_code == 302
    return client


def token_of(client, territory) -> str:
    return csrf_token_from(client.get(url(territory)).get_data(as_text=True))


SETTINGS = {"timezone": "Europe/Paris", "sms_sender": "PMI92", "messaging_service_sid": "", "reminder_offsets": "48",
            "quiet_hours_start": "20:00", "quiet_hours_end": "08:00"}


def post_settings(client, territory, **changes):
    data = {**SETTINGS, **changes, "csrf_token": token_of(client, territory)}
    return client.post(url(territory), data={key: value for key, value in data.items() if value is not None})


def reloaded(territory: Territory) -> Territory:
    _db.session.expire_all()
    return _db.session.get(Territory, territory.id)


# --- Who may open it ----------------------------------------------------------------------------------------------

def test_an_administrator_opens_the_settings_of_their_territory(as_admin, clinic):
    page = as_admin.get(url(clinic.territory))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Fuseau horaire" in html and "Compte Twilio du département" in html and "Textes des SMS" in html
    assert "Non renseigné" in html and "160 caractères" in html


def test_an_agent_is_refused_and_another_territorys_administrator_does_not_see_it(client, auth, factories, clinic):
    agent = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    assert auth.login(agent).status_code == 302
    assert client.get(url(clinic.territory)).status_code == 403
    auth.logout()
    elsewhere = make_clinic(factories, number="974", tz="Indian/Reunion")
    assert auth.login(admin_of(factories, elsewhere)).status_code == 302
    token = csrf_token_from(client.get("/usagers").get_data(as_text=True))
    assert client.get(url(clinic.territory)).status_code == 404
    for suffix in ("", "/twilio", "/operateur", "/sms", "/apercu"):
        response = client.post(url(clinic.territory, suffix), data={"csrf_token": token, "sms_label": "PMI"})
        assert response.status_code == 404
    assert reloaded(clinic.territory).sms_label is None


def test_the_menu_leads_an_administrator_to_their_settings_and_hides_them_from_an_agent(client, auth, factories,
                                                                                        clinic):
    admin = admin_of(factories, clinic)
    assert auth.login(admin).status_code == 302
    assert re.search(r'href="/parametres"\s*>Paramètres du territoire', client.get("/usagers").get_data(as_text=True))
    assert client.get("/parametres").headers["Location"].endswith(url(clinic.territory))
    auth.logout()
    agent = factories.AgentFactory(organisation=clinic.organisation, organisation__role=Role.AGENT)
    assert auth.login(agent).status_code == 302
    assert "Paramètres du territoire" not in client.get("/usagers").get_data(as_text=True)
    assert client.get("/parametres").status_code == 403


# --- Settings ---------------------------------------------------------------------------------------------------

def test_the_settings_are_stored_and_a_new_time_zone_is_warned_about(as_admin, clinic):
    response = post_settings(as_admin, clinic.territory, timezone="Indian/Reunion", sms_sender="07 57 00 00 01",
                             takes_replies="y", reminder_offsets="2, 48", quiet_hours_start="19:30",
                             quiet_hours_end="07:45", moves_any_agent="y")
    assert response.status_code == 302
    territory = reloaded(clinic.territory)
    assert territory.family_moves_any_agent is True
    assert (territory.timezone, territory.sms_sender, territory.sms_takes_replies, territory.reminder_offsets) == (
        "Indian/Reunion", "+33757000001", True, "48,2")
    assert (territory.quiet_hours_start, territory.quiet_hours_end) == (time(19, 30), time(7, 45))
    page = as_admin.get(response.location).get_data(as_text=True)
    assert "gardent leur instant" in page and "Paramètres enregistrés" in page
    assert '<input checked id="moves_any_agent"' in page
    assert post_settings(as_admin, clinic.territory, timezone="Indian/Reunion").status_code == 302
    assert reloaded(clinic.territory).family_moves_any_agent is False  # an unticked box is not sent


@pytest.mark.parametrize("changes, message", [
    ({"timezone": "America/New_York"}, "n'est pas un fuseau horaire de la France"),
    ({"sms_sender": "PMI-du-Nord-59"}, "1 à 11 lettres"),
    ({"sms_sender": "01 41 37 10 00"}, "n'est pas un numéro de mobile"),
    ({"sms_sender": "PMI59", "takes_replies": "y"}, "alphanumérique ne peut pas recevoir de réponses"),
    ({"messaging_service_sid": "MG123"}, "MG suivi de 32"),
    ({"reminder_offsets": "demain"}, "nombres d'heures"),
    ({"reminder_offsets": "0"}, "entre 1 et"),
    ({"quiet_hours_start": "25:00"}, "heure valide"),
    ({"quiet_hours_end": ""}, "Indiquez une heure"),
    ({"quiet_hours_start": "08:00", "quiet_hours_end": "08:00"}, "deux heures différentes"),
])
def test_a_bad_setting_is_refused_in_french_and_nothing_is_stored(as_admin, clinic, changes, message):
    before = reloaded(clinic.territory)
    stored = (before.timezone, before.sms_sender, before.sms_takes_replies, before.reminder_offsets,
              before.twilio_messaging_service_sid, before.quiet_hours_start, before.quiet_hours_end)
    response = post_settings(as_admin, clinic.territory, **changes)
    assert response.status_code == 422
    assert message in html_text.unescape(response.get_data(as_text=True))
    after = reloaded(clinic.territory)
    assert (after.timezone, after.sms_sender, after.sms_takes_replies, after.reminder_offsets,
            after.twilio_messaging_service_sid, after.quiet_hours_start, after.quiet_hours_end) == stored


def test_a_post_without_its_csrf_token_changes_nothing(as_admin, clinic):
    assert as_admin.post(url(clinic.territory), data={**SETTINGS, "sms_sender": "PMI59"}).status_code in (400, 422)
    assert reloaded(clinic.territory).sms_sender is None


# --- Twilio credentials -----------------------------------------------------------------------------------------

def post_credentials(client, territory, **data):
    return client.post(url(territory, "/twilio"), data={**data, "csrf_token": token_of(client, territory)})


def test_credentials_are_encrypted_never_shown_back_kept_when_blank_and_deleted_on_request(as_admin, clinic, db):
    assert post_credentials(as_admin, clinic.territory, account_sid=OWN_SID, auth_token=OWN_TOKEN).status_code == 302
    row = db.session.execute(text("SELECT * FROM territories WHERE id = :id"), {"id": clinic.territory.id}).one()
    assert all(OWN_SID not in str(value) and OWN_TOKEN not in str(value) for value in row)
    territory = reloaded(clinic.territory)
    assert territory.has_twilio_credentials
    page = as_admin.get(url(territory)).get_data(as_text=True)
    assert OWN_SID not in page and OWN_TOKEN not in page
    assert f"se termine par …{OWN_SID[-4:]}" in page and f"se termine par …{OWN_TOKEN[-4:]}" in page

    saved = territory.twilio_auth_token_encrypted
    assert post_credentials(as_admin, territory, account_sid="", auth_token="").status_code == 302
    assert reloaded(territory).twilio_auth_token_encrypted == saved  # blank keeps

    assert post_credentials(as_admin, territory, delete_account_sid="y", delete_auth_token="y").status_code == 302
    territory = reloaded(territory)
    assert not territory.has_twilio_credentials and territory.twilio_account_sid_saved_at is None
    assert "Non renseigné" in as_admin.get(url(territory)).get_data(as_text=True)


@pytest.mark.parametrize("data, message", [
    ({"account_sid": "AC123", "auth_token": OWN_TOKEN}, "AC suivi de 32"),
    ({"account_sid": OWN_SID, "auth_token": "secret"}, "32 caractères hexadécimaux"),
    ({"account_sid": OWN_SID}, "vont ensemble"),
])
def test_bad_credentials_are_refused_in_french_not_stored_and_not_shown_back(as_admin, clinic, data, message):
    response = post_credentials(as_admin, clinic.territory, **data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and message in html
    assert OWN_SID not in html and OWN_TOKEN not in html
    territory = reloaded(clinic.territory)
    assert territory.twilio_account_sid_encrypted is None and territory.twilio_auth_token_encrypted is None


class AccountRouter:
    """One TWILIO_BASE_URL for two loopback fakes (one Twilio account each): each request goes to the fake of the
    account named in its path, so the fake that gets an SMS says which credentials sent it."""

    def __init__(self, *fakes: TwilioFake) -> None:
        by_account = {fake.account_sid: fake for fake in fakes}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                account = urlsplit(self.path).path.split("/")[3]
                fake = by_account.get(account, fakes[0])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
                headers = {key: value for key, value in self.headers.items() if key.lower() != "host"}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def two_accounts(app):
    """The deployment's Twilio account (environment) and a territory's own, behind one TWILIO_BASE_URL."""
    with TwilioFake() as environment, TwilioFake(account_sid=OWN_SID, auth_token=OWN_TOKEN) as own:
        router = AccountRouter(environment, own)
        settings = {"SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": environment.account_sid,
                    "TWILIO_AUTH_TOKEN": environment.auth_token, "TWILIO_BASE_URL": router.url,
                    "PUBLIC_URL": PUBLIC_URL}
        saved = {key: app.config.get(key) for key in settings}
        app.config.update(settings)
        for cache in ("lapins.sms_backend", "lapins.territory_sms_backends"):
            app.extensions.pop(cache, None)
        yield environment, own
        app.config.update(saved)
        for cache in ("lapins.sms_backend", "lapins.territory_sms_backends"):
            app.extensions.pop(cache, None)
        router.stop()


def test_sms_leave_from_the_territorys_own_account_and_others_from_the_environments(as_admin, clinic, factories, db,
                                                                                     two_accounts, app):
    environment, own = two_accounts
    assert post_credentials(as_admin, clinic.territory, account_sid=OWN_SID, auth_token=OWN_TOKEN).status_code == 302
    clinic.territory.sms_sender = "PMI92"
    neighbour = make_clinic(factories, number="93")
    neighbour.territory.sms_sender = "PMI93"
    neighbour.mother.phone = "+33698765432"
    db.session.commit()

    book(clinic, local(PARIS, 10, 23, 9, 30))
    book(clinic, local(PARIS, 10, 23, 11, 0))
    book(neighbour, local(PARIS, 10, 23, 10, 0))

    assert [(m.account_sid, m.to, m.from_) for m in own.messages] == [(OWN_SID, "+33612345678", "PMI92")] * 2
    assert [(m.account_sid, m.to) for m in environment.messages] == [(environment.account_sid, "+33698765432")]
    assert len(app.extensions["lapins.territory_sms_backends"]) == 1
    sent = messages(db, kind=MessageKind.CREATED, channel=Channel.SMS)
    assert {message.status for message in sent} == {MessageStatus.SENT}


def test_webhooks_of_a_territory_with_its_own_account_are_checked_with_its_auth_token(as_admin, clinic, db, client,
                                                                                      two_accounts):
    environment, own = two_accounts
    assert post_credentials(as_admin, clinic.territory, account_sid=OWN_SID, auth_token=OWN_TOKEN).status_code == 302
    clinic.territory.sms_sender = "+33757000001"
    clinic.territory.sms_takes_replies = True
    db.session.commit()
    rdv = book(clinic, local(PARIS, 10, 23, 9, 30))
    sms = messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED, channel=Channel.SMS)[0]

    forged = environment.sign(f"{PUBLIC_URL}{STATUS_PATH}", own.status_request(sms.provider_id, "delivered").data,
                              auth_token=OTHER_TOKEN)
    assert client.post(forged.path, data=forged.data, headers=forged.headers).status_code == 403
    by_the_environment = environment.sign(forged.url, forged.data)  # a valid signature, but not this territory's
    assert client.post(forged.path, data=forged.data, headers=by_the_environment.headers).status_code == 200
    db.session.refresh(sms)
    assert sms.status == MessageStatus.SENT
    callback = own.status_request(sms.provider_id, "delivered")
    assert client.post(callback.path, data=callback.data, headers=callback.headers).status_code == 204
    db.session.refresh(sms)
    assert sms.status == MessageStatus.DELIVERED

    reply = own.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_="+33612345678", body="OUI", to="+33757000001")
    environment_reply = environment.sign(reply.url, reply.data)
    answered = client.post(reply.path, data=reply.data, headers=environment_reply.headers)
    assert answered.status_code == 200 and "<Message>" not in answered.get_data(as_text=True)
    db.session.refresh(rdv)
    assert rdv.confirmed_at is None  # the environment's token does not speak for this territory
    answered = client.post(reply.path, data=reply.data, headers=reply.headers)
    assert "confirmé" in answered.get_data(as_text=True)


# --- Wording and its preview ------------------------------------------------------------------------------------

def preview(client, territory, **asked):
    return client.post(url(territory, "/apercu"), json=asked,
                       headers={"X-CSRFToken": token_of(client, territory)})


def test_the_preview_composes_each_sample_with_the_wording_being_typed(as_admin, clinic):
    response = preview(as_admin, clinic.territory, kind="reminder", label="PMI 92",
                       note="Carnet de santé SVP.")
    assert response.status_code == 200
    data = response.get_json()
    assert data["error"] is None and len(data["texts"]) == 3
    for sample in data["texts"]:
        assert sample["text"].startswith("PMI 92 : rappel")
        assert "Carnet de santé SVP." in sample["text"] and sample["note_kept"]
        assert sample["septets"] <= 160 and sample["segments"] == 1 and sample["encoding"] == "GSM-7"
    assert data["room"] >= 20 and "RDV téléphonique" in data["html"] and "nous vous appelons" in data["texts"][1]["text"]
    assert "La Réunion" in data["texts"][2]["title"]


def test_the_preview_says_what_becomes_of_characters_outside_gsm7(as_admin, clinic):
    data = preview(as_admin, clinic.territory, kind="cancelled", note="Vœux à tous !").get_json()
    assert data["typed"] == {"encoding": "UCS-2", "sent_as": "Voeux à tous !"}
    assert "Voeux à tous !" in data["texts"][1]["text"] and "UCS-2" in data["html"]
    data = preview(as_admin, clinic.territory, kind="created", note="Bonne journée 🙂").get_json()
    assert "n'existent pas dans l'alphabet des SMS" in data["error"] and "🙂" in data["error"]


def test_the_preview_needs_its_csrf_token(as_admin, clinic):
    assert as_admin.post(url(clinic.territory, "/apercu"), json={"note": "x"}).status_code == 400


def post_wording(client, territory, **data):
    return client.post(url(territory, "/sms"), data={**data, "csrf_token": token_of(client, territory)})


@pytest.mark.parametrize("data, message", [
    ({"note_reminder": "Merci de venir avec le carnet de santé de l'enfant et ses vaccins à jour."},
     "trop longue"),
    ({"note_reminder": "Pensez au carnet de santé et à la carte Vitale."}, "trop longue pour tenir dans un seul SMS"),
    ({"note_created": "Bonne journée 🙂"}, "n'existent pas dans l'alphabet des SMS"),
    ({"note_cancelled": "Reprenez RDV sur www.pmi92.fr"}, "Pas d'adresse web"),
    ({"sms_label": "Protection maternelle et infantile du département"}, "32 au plus"),
])
def test_a_wording_that_would_not_fit_is_refused_and_nothing_is_stored(as_admin, clinic, data, message):
    response = post_wording(as_admin, clinic.territory, **data)
    assert response.status_code == 422 and message in html_text.unescape(response.get_data(as_text=True))
    territory = reloaded(clinic.territory)
    assert territory.sms_label is None and all(territory.sms_note(kind) is None
                                               for kind in ("created", "changed", "cancelled", "reminder"))


def test_an_accepted_wording_is_in_the_real_reminder_of_an_rdv(as_admin, clinic, db, clock):
    response = post_wording(as_admin, clinic.territory, sms_label="PMI 92", note_reminder="Carnet de santé SVP",
                            note_created="Merci de prévenir.")
    assert response.status_code == 302, html_text.unescape(response.get_data(as_text=True))
    territory = reloaded(clinic.territory)
    assert territory.sms_note_reminder == "Carnet de santé SVP."

    rdv = book(clinic, local(PARIS, 10, 26, 9, 0))
    [created] = messages(db, rdv_id=rdv.id, kind=MessageKind.CREATED, channel=Channel.SMS)
    assert created.body.startswith("PMI 92 : RDV de Léa confirmé") and "Merci de prévenir" in created.body
    [reminder] = messages(db, rdv_id=rdv.id, kind=MessageKind.REMINDER, channel=Channel.SMS)
    clock.move_to(reminder.due_at)
    handed: list[list[int]] = []
    outbox.dispatch_due(enqueue=handed.append)
    outbox.send_batch(handed[0])
    db.session.refresh(reminder)
    assert reminder.status == MessageStatus.SENT
    assert "Carnet de santé SVP." in reminder.body and reminder.body.startswith("PMI 92 : rappel")
    assert is_gsm7(reminder.body) and segments(reminder.body) == 1
