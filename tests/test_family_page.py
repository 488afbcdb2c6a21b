"""The page a family opens from its SMS or e-mail: no account, a signed link, the rdv in its own time zone."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from icalendar import Calendar

from lapins.booking import book_rdv, cancel_rdv
from lapins.models import RdvStatus, Role
from lapins.notifications.links import rdv_id_from_token, rdv_token

REUNION = ZoneInfo("Indian/Reunion")
NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def rdv(factories):
    organisation = factories.OrganisationFactory(territory__number="974", territory__timezone="Indian/Reunion",
                                                 name="PMI La Réunion Nord")
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis",
                                 address="3 rue de Paris, 97400 Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    factories.PlageFactory(agent=agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[motif], start_time=time(8),
                           end_time=time(17), weekdays=0b1111111)
    usager = factories.UsagerFactory(territory=organisation.territory, first_name="Noémie", last_name="Payet",
                                     phone="+262692123456")
    return book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[usager], lieu=lieu,
                    starts_at=datetime(2026, 10, 23, 9, 30, tzinfo=REUNION))


def test_the_family_sees_its_rdv_in_the_territorys_time_without_signing_in(client, rdv):
    page = client.get(f"/r/{rdv_token(rdv.id)}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "vendredi 23 octobre 2026 à 09h30" in text  # Réunion time, whatever the server's zone
    assert "Centre PMI Saint-Denis" in text and "3 rue de Paris" in text and "0262 90 10 10" in text
    assert "Payet" not in text and "Noémie" not in text  # a forwarded link reveals no name


def test_add_to_my_calendar_gives_the_right_instant(client, rdv):
    response = client.get(f"/r/{rdv_token(rdv.id)}/rendez-vous.ics")
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    event = Calendar.from_ical(response.data).walk("VEVENT")[0]
    assert event.decoded("DTSTART") == rdv.starts_at


@pytest.mark.parametrize("mangle", [
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # altered signature
    lambda token: "ff" + token,  # another rdv id with this signature
    lambda token: token.split("-")[0],  # no signature
    lambda token: "zz-" + token.split("-", 1)[1],  # not a number
    # The same rdv id written another way than the link's: int(…, 16) reads them all, the link accepts one.
    lambda token: "0x" + token,
    lambda token: "+" + token,
    lambda token: "000" + token,
    lambda token: " " + token,
    lambda token: token.split("-")[0].upper() + "AB-" + token.split("-", 1)[1],
    lambda token: token[0] + "_" + token[1:] if token.index("-") > 1 else "1_" + token,
    # A signature of ten non-ASCII characters (once a 500: compare_digest refuses non-ASCII str).
    lambda token: token.split("-")[0] + "-" + "é" * 10,
])
def test_a_forged_link_opens_nothing(client, rdv, mangle):
    token = mangle(rdv_token(rdv.id))
    assert rdv_id_from_token(token) is None
    page = client.get(f"/r/{token}")
    assert page.status_code == 404 and "Lien invalide" in page.get_data(as_text=True)
    assert client.get(f"/r/{token}/rendez-vous.ics").status_code == 404


def test_one_rdv_has_one_link_only(client, rdv):
    """`/r/0x1-…`, `/r/+1-…`, `/r/0001-…` once all opened rdv 1: only the form rdv_token writes opens it now."""
    number, signature = rdv_token(rdv.id).split("-", 1)  # the signature is URL-safe base64: it may hold "-" too
    assert client.get(f"/r/{number}-{signature}").status_code == 200
    for variant in (f"0x{number}", f"0X{number}", f"+{number}", f"0{number}", f"0001{number}", f"{number}%20",
                    f"%20{number}", f"0_{number}"):
        assert client.get(f"/r/{variant}-{signature}").status_code == 404, variant
    for variant in (f"0x{number}", f"+{number}", f"0{number}", f" {number}", f"{number}\n", f"0_{number}"):
        assert rdv_id_from_token(f"{variant}-{signature}") is None, variant
    upper = rdv_token(0xABC).split("-", 1)
    assert rdv_id_from_token("-".join(upper)) == 0xABC
    assert rdv_id_from_token(f"{upper[0].upper()}-{upper[1]}") is None


def test_a_link_expires_after_the_rdv(client, rdv, frozen_time):
    frozen_time.move_to(rdv.ends_at + timedelta(minutes=1))
    page = client.get(f"/r/{rdv_token(rdv.id)}")
    assert page.status_code == 410 and "Rendez-vous passé" in page.get_data(as_text=True)


def test_a_cancelled_rdv_says_so_and_gives_the_number_to_call(client, rdv):
    cancel_rdv(actor=rdv.agents[0], rdv=rdv, status=RdvStatus.REVOKED, reason="Agent absent")
    text = client.get(f"/r/{rdv_token(rdv.id)}").get_data(as_text=True)
    assert "Rendez-vous annulé" in text and "par le service" in text and "0262 90 10 10" in text
    assert "Ajouter à mon agenda" not in text
