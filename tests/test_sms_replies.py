"""Two-way SMS: a family answers OUI or ANNULER to its reminder, through Twilio's signed inbound webhook."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from lapins.booking import book_rdv
from lapins.infra.extensions import db as _db
from lapins.models import Rdv, RdvStatus, Role
from lapins.models.rdvs import CancellationChannel, Canceller
from lapins.notifications.gsm import is_gsm7, segments
from lapins.notifications.webhooks import INBOUND_PATH

PUBLIC_URL = "https://rdv.pmi.example.fr"
SENDER = "+33757000001"  # the territory's number, which takes replies
PHONE = "+33612345678"
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)  # Monday 10:00 in Paris


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def inbound(app, client, twilio_fake, twilio_app_config):
    """Text the territory's number as Twilio would post it: signed for PUBLIC_URL; the TwiML answer's text back."""
    saved = {key: app.config.get(key) for key in [*twilio_app_config, "PUBLIC_URL"]}
    app.config.update(twilio_app_config, PUBLIC_URL=PUBLIC_URL)
    app.extensions.pop("lapins.sms_backend", None)  # built for the fake, and dropped after

    def send(body: str, from_: str = PHONE, to: str = SENDER) -> str | None:
        request = twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=from_, body=body, to=to)
        response = client.post(request.path, data=request.data, headers=request.headers)
        assert response.status_code == 200 and response.mimetype == "application/xml"
        found = re.search(r"<Message>(.*)</Message>", response.get_data(as_text=True), re.S)
        return found.group(1).replace("&#x27;", "'").replace("&apos;", "'") if found else None

    yield send
    app.config.update(saved)
    app.extensions.pop("lapins.sms_backend", None)


@pytest.fixture()
def family(factories):
    organisation = factories.OrganisationFactory(territory__sms_sender=SENDER, territory__sms_takes_replies=True,
                                                 phone="+33141371000")
    lieu = factories.LieuFactory(organisation=organisation, phone="+33141371010")
    motif = factories.MotifFactory(organisation=organisation, duration_minutes=30)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 10, 1), motifs=[motif], start_time=time(8),
                           end_time=time(18), weekdays=0b1111111)
    mother = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation], phone=PHONE,
                                     sms_consent=True)
    child = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation], phone=None,
                                    responsible=mother)
    second_child = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                           phone=None, responsible=mother)

    def rdv(day: int, hour: int, usager=None):
        return book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager or child], lieu=lieu,
                        starts_at=datetime.combine(date(2026, 10, day), time(hour), PARIS))

    return type("Family", (), dict(organisation=organisation, mother=mother, child=child, second_child=second_child,
                                   rdv=staticmethod(rdv)))


def reloaded(rdv: Rdv) -> Rdv:
    _db.session.expire_all()
    return _db.session.get(Rdv, rdv.id)


def one_segment(text: str) -> bool:
    return is_gsm7(text) and segments(text) == 1


def test_oui_confirms_the_next_rdv_and_says_so(inbound, family):
    first, later = family.rdv(21, 9), family.rdv(28, 9)
    answer = inbound("Oui merci")
    assert answer == "Merci, votre RDV du mer. 21/10 à 9h est confirmé." and one_segment(answer)
    assert reloaded(first).confirmed_at == NOW and reloaded(later).confirmed_at is None


def test_a_childs_second_guardian_confirms_from_their_own_number(inbound, family, factories):
    father = factories.UsagerFactory(territory=family.organisation.territory, organisations=[family.organisation],
                                     phone="+33698765432", sms_consent=True)
    family.child.second_responsible = father
    _db.session.commit()
    first = family.rdv(21, 9)
    assert inbound("OUI", from_="+33698765432") == "Merci, votre RDV du mer. 21/10 à 9h est confirmé."
    assert reloaded(first).confirmed_at == NOW


def test_a_second_guardian_cancelling_by_sms_is_answered_and_the_first_is_told_once(inbound, family, factories,
                                                                                     twilio_fake):
    from sqlalchemy import select

    from lapins.models import Channel, Message, MessageKind

    father = factories.UsagerFactory(territory=family.organisation.territory, organisations=[family.organisation],
                                     phone="+33698765432", sms_consent=True)
    family.mother.email, family.mother.email_consent = "mere@example.fr", True
    family.child.second_responsible = father
    _db.session.commit()
    rdv = family.rdv(21, 9)
    assert inbound("ANNULER", from_="+33698765432").startswith("Votre RDV du mer. 21/10 à 9h est annulé.")
    assert reloaded(rdv).status == RdvStatus.EXCUSED and reloaded(rdv).link_actor_id == father.id
    told = _db.session.scalars(select(Message).where(Message.rdv_id == rdv.id,
                                                     Message.kind == MessageKind.CANCELLED)).all()
    assert [(m.usager_id, m.channel) for m in told] == [(family.mother.id, Channel.SMS)]
    notice = [m for m in twilio_fake.messages if m.to == PHONE][-1]
    assert "annulé" in notice.body and "comme demandé" not in notice.body


def test_annuler_cancels_the_next_rdv_as_the_family_and_frees_it(inbound, family):
    rdv = family.rdv(21, 9)
    answer = inbound("annuler")
    assert answer == "Votre RDV du mer. 21/10 à 9h est annulé. Merci de nous avoir prévenus." and one_segment(answer)
    rdv = reloaded(rdv)
    assert rdv.status == RdvStatus.EXCUSED and rdv.cancelled_via == CancellationChannel.SMS
    assert rdv.cancelled_by_party == Canceller.FAMILY and rdv.cancelled_by_id is None


@pytest.mark.parametrize("text", ["NON", "Non.", "ANNULÉ"])
def test_non_and_annule_cancel_too(inbound, family, text):
    rdv = family.rdv(21, 9)
    assert "est annulé" in inbound(text)
    assert reloaded(rdv).status == RdvStatus.EXCUSED


def test_two_rdvs_close_together_ask_which_one_then_cancel_the_one_chosen(inbound, family):
    first = family.rdv(21, 9)
    sibling = family.rdv(22, 14, usager=family.second_child)
    question = inbound("ANNULER")
    assert question == ("Vous avez 2 RDV : 1) mer. 21/10 à 9h ; 2) jeu. 22/10 à 14h. Lequel annuler ? "
                        "Répondez ANNULER 1 ou ANNULER 2.") and one_segment(question)
    assert reloaded(first).is_live and reloaded(sibling).is_live

    assert "jeu. 22/10 à 14h est annulé" in inbound("Annuler 2")
    assert reloaded(first).is_live and reloaded(sibling).status == RdvStatus.EXCUSED
    assert inbound("2").startswith("Répondez OUI")  # the question was answered: a number alone means nothing now
    assert reloaded(first).is_live


def test_a_bare_number_answers_the_question(inbound, family):
    first, sibling = family.rdv(21, 9), family.rdv(22, 14, usager=family.second_child)
    inbound("ANNULER")
    assert "mer. 21/10 à 9h est annulé" in inbound("1")
    assert reloaded(first).status == RdvStatus.EXCUSED and reloaded(sibling).is_live


def test_the_numbers_keep_the_list_as_sent_even_if_an_rdv_was_cancelled_meanwhile(inbound, family, db):
    from lapins.booking import cancel_rdv

    first, sibling = family.rdv(21, 9), family.rdv(22, 14, usager=family.second_child)
    inbound("ANNULER")
    cancel_rdv(actor=None, rdv=reloaded(first), status=RdvStatus.EXCUSED, reason=None, via=CancellationChannel.LINK)
    assert "jeu. 22/10 à 14h est annulé" in inbound("ANNULER 2")
    assert reloaded(sibling).status == RdvStatus.EXCUSED


def test_a_far_rdv_does_not_make_annuler_ambiguous(inbound, family):
    first, far = family.rdv(21, 9), family.rdv(30, 9)
    assert "mer. 21/10 à 9h est annulé" in inbound("ANNULER")
    assert reloaded(first).status == RdvStatus.EXCUSED and reloaded(far).is_live


def test_too_late_to_cancel_by_sms_says_whom_to_call_and_changes_nothing(inbound, family):
    rdv = family.rdv(19, 12)  # today at noon, two hours from now: past the 4-hour limit
    answer = inbound("ANNULER")
    assert answer == "Trop tard pour annuler par SMS le RDV du lun. 19/10 à 12h : appelez le 01 41 37 10 10."
    assert one_segment(answer) and reloaded(rdv).is_live


@pytest.mark.parametrize("text", ["CHANGER", "changer", "Déplacer", "modifier."])
def test_changer_answers_with_the_link_to_pick_another_time_for_the_next_rdv(inbound, family, client, text):
    rdv = family.rdv(21, 9)
    family.rdv(28, 9)
    answer = inbound(text)
    link = re.search(r"https://rdv\.pmi\.example\.fr(/r/\S+/changer)$", answer)
    assert answer.startswith("Pour changer la date de votre RDV du mer. 21/10 à 9h : ") and link
    assert one_segment(answer) and reloaded(rdv).starts_at == datetime(2026, 10, 21, 9, tzinfo=PARIS)
    opened = client.get(link.group(1))  # the family's rdv page first, for the identity check, then the picker
    assert opened.status_code == 302 and "suite=changer" in opened.headers["Location"]


def test_changer_past_the_motifs_limit_says_whom_to_call(inbound, family, factories):
    family.rdv(20, 9)  # tomorrow 9:00, 23 hours from now: past the 24-hour limit
    answer = inbound("CHANGER")
    assert answer == "Le RDV du mar. 20/10 à 9h n'est plus modifiable en ligne : appelez le 01 41 37 10 10."
    assert one_segment(answer)


def test_any_other_text_from_a_family_gets_the_words_understood(inbound, family):
    family.rdv(21, 9)
    answer = inbound("Bonjour, à quelle heure déjà ?")
    assert answer.startswith("Répondez OUI pour confirmer votre RDV, ANNULER") and one_segment(answer)


def test_a_number_without_rdv_to_come_is_told_so_or_left_unanswered(inbound, family):
    assert inbound("OUI") == "Aucun RDV à venir pour ce numéro. Pour prendre RDV, appelez votre centre de PMI."
    assert inbound("ANNULER").startswith("Aucun RDV") and inbound("CHANGER").startswith("Aucun RDV")
    assert inbound("Bonjour") is None


@pytest.mark.parametrize("text", ["ANNULER", "OUI", "NON", "ANNULER 2", "2", "Bonjour", "CHANGER"])
def test_an_unknown_number_gets_no_answer_whatever_it_texts(inbound, family, text):
    """Each answer is a billed SMS: a number no usager of the territory has (anyone may text it) gets none."""
    family.rdv(21, 9)
    family.rdv(22, 9)  # an rdv to come, and two close ones: nothing of the family's answers a stranger
    assert inbound(text, from_="+33699999999") is None


def test_a_sender_that_takes_no_replies_changes_nothing(inbound, family, db):
    rdv = family.rdv(21, 9)
    family.organisation.territory.sms_takes_replies = False
    db.session.commit()
    assert inbound("ANNULER") is None and reloaded(rdv).is_live


def test_another_territorys_number_cannot_cancel_this_rdv(inbound, family, factories):
    rdv = family.rdv(21, 9)
    factories.TerritoryFactory(sms_sender="+33757000099", sms_takes_replies=True)
    assert inbound("ANNULER", to="+33757000099") is None and reloaded(rdv).is_live  # unknown there: no answer


def test_a_forged_reply_is_refused_and_changes_nothing(inbound, client, twilio_fake, family):
    rdv = family.rdv(21, 9)
    signed = twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=PHONE, body="ANNULER", to=SENDER)
    forged = twilio_fake.sign(signed.url, signed.data, auth_token="0" * 32)
    assert client.post(forged.path, data=forged.data, headers=forged.headers).status_code == 403
    assert reloaded(rdv).is_live


def test_stop_still_withdraws_consent_where_replies_are_taken(inbound, family):
    assert "ne recevrez plus" in inbound("STOP")
    _db.session.expire_all()
    assert not _db.session.get(type(family.mother), family.mother.id).sms_consent


# --- Replays: the same signed request posted again does nothing ---------------------------------------------------

def post_again(client, request, times: int) -> list[str | None]:
    """Posts the very same signed request (same MessageSid, same signature) `times` times: the answers' texts."""
    answers = []
    for _ in range(times):
        response = client.post(request.path, data=request.data, headers=request.headers)
        assert response.status_code == 200 and response.mimetype == "application/xml"
        found = re.search(r"<Message>(.*)</Message>", response.get_data(as_text=True), re.S)
        answers.append(found.group(1) if found else None)
    return answers


def test_a_replayed_annuler_cancels_nothing_more(inbound, client, twilio_fake, family):
    """The attack: posting one caught ANNULER again cancelled the next rdv, then the one after."""
    rdvs = [family.rdv(21, 9), family.rdv(25, 9), family.rdv(29, 9)]  # four days apart: never ambiguous
    caught = twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=PHONE, body="ANNULER", to=SENDER)
    answers = post_again(client, caught, 3)
    assert "mer. 21/10 à 9h est annulé" in answers[0] and answers[1:] == [None, None]
    assert [reloaded(rdv).status for rdv in rdvs] == [RdvStatus.EXCUSED, RdvStatus.UNKNOWN, RdvStatus.UNKNOWN]
    assert "dim. 25/10 à 9h est annulé" in inbound("ANNULER")  # the family's next SMS is a new one: it acts


def test_a_replayed_numbered_answer_or_stop_does_nothing_more(inbound, client, twilio_fake, family, db):
    first, sibling, third = family.rdv(21, 9), family.rdv(22, 14, usager=family.second_child), family.rdv(23, 9)
    assert "Vous avez 3 RDV" in inbound("ANNULER")
    caught = twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=PHONE, body="ANNULER 2", to=SENDER)
    assert "jeu. 22/10 à 14h est annulé" in post_again(client, caught, 1)[0]
    assert "Vous avez 2 RDV" in inbound("ANNULER")  # a new question: 2) is now the 23rd
    assert post_again(client, caught, 2) == [None, None]
    assert reloaded(first).is_live and reloaded(third).is_live and reloaded(sibling).status == RdvStatus.EXCUSED

    stop = twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=PHONE, body="STOP", to=SENDER)
    assert "ne recevrez plus" in post_again(client, stop, 1)[0]
    mother = db.session.get(type(family.mother), family.mother.id)
    mother.sms_consent = True  # the family asked its PMI for reminders again
    db.session.commit()
    assert post_again(client, stop, 1) == [None]
    db.session.expire_all()
    assert db.session.get(type(family.mother), family.mother.id).sms_consent is True


def test_a_cancellation_refused_meanwhile_still_uses_up_the_request(inbound, client, twilio_fake, family,
                                                                     monkeypatch):
    """cancel_rdv rolls back when someone else cancelled the rdv at the same moment; the SMS's record, rolled back
    with it, is written again, so that a replay does not cancel the next rdv."""
    from lapins.booking import BookingError
    from lapins.notifications import replies

    first, second = family.rdv(21, 9), family.rdv(25, 9)

    def cancelled_meanwhile(**kwargs):
        _db.session.rollback()  # what cancel_rdv does when its conditional UPDATE finds the rdv cancelled
        raise BookingError("Ce rendez-vous est déjà annulé.")

    monkeypatch.setattr(replies, "cancel_rdv", cancelled_meanwhile)
    caught = twilio_fake.inbound_request(f"{PUBLIC_URL}{INBOUND_PATH}", from_=PHONE, body="ANNULER", to=SENDER)
    assert "est déjà annulé" in post_again(client, caught, 1)[0]
    monkeypatch.undo()
    assert post_again(client, caught, 2) == [None, None]
    assert reloaded(first).is_live and reloaded(second).is_live


def test_the_agent_sees_the_familys_confirmation_on_the_rdv_page(inbound, family, client, auth):
    rdv = family.rdv(21, 9)
    inbound("OUI")
    auth.login(reloaded(rdv).agents[0])
    page = client.get(f"/rdvs/{rdv.id}").get_data(as_text=True)
    assert "Confirmé par la famille" in page and "par SMS le lundi 19 octobre 2026 à 10h00" in page


def test_copies_of_one_annuler_arriving_together_cancel_one_rdv(database_url):
    """Several copies of one signed request at the same moment, on a real threaded server, on SQLite and PostgreSQL:
    each waits on the unique index for the first's commit, then does nothing."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from sqlalchemy import func, select
    from twilio.request_validator import RequestValidator
    from werkzeug.serving import make_server

    from lapins import create_app
    from lapins.models.messages import TwilioCallback
    from tests import factories

    token, copies = "a" * 32, 6
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=database_url, PUBLIC_URL=PUBLIC_URL, TWILIO_AUTH_TOKEN=token)
    with app.app_context():
        organisation = factories.OrganisationFactory(territory__sms_sender=SENDER, territory__sms_takes_replies=True)
        lieu = factories.LieuFactory(organisation=organisation)
        motif = factories.MotifFactory(organisation=organisation, duration_minutes=30)
        agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
        factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 10, 1), motifs=[motif],
                               start_time=time(8), end_time=time(18), weekdays=0b1111111)
        mother = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation], phone=PHONE)
        rdv_ids = [book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[mother], lieu=lieu,
                            starts_at=datetime.combine(date(2026, 10, day), time(9), PARIS)).id for day in (21, 25, 29)]
        _db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        data = {"MessageSid": "SM" + "7" * 32, "From": PHONE, "To": SENDER, "Body": "ANNULER"}
        headers = {"X-Twilio-Signature": RequestValidator(token).compute_signature(
            f"{PUBLIC_URL}{INBOUND_PATH}", data)}
        start = threading.Barrier(copies)

        def post(_):
            start.wait()
            return requests.post(f"http://127.0.0.1:{server.server_port}{INBOUND_PATH}", data=data, headers=headers,
                                 timeout=60)

        with ThreadPoolExecutor(copies) as pool:
            responses = list(pool.map(post, range(copies)))
        assert [response.status_code for response in responses] == [200] * copies
        assert sum("<Message>" in response.text for response in responses) == 1
        with app.app_context():
            statuses = [_db.session.get(Rdv, rdv_id).status for rdv_id in rdv_ids]
            assert statuses == [RdvStatus.EXCUSED, RdvStatus.UNKNOWN, RdvStatus.UNKNOWN]
            assert _db.session.scalar(select(func.count(TwilioCallback.id))) == 1
            _db.session.remove()
    finally:
        server.shutdown()
        with app.app_context():
            _db.engine.dispose()
