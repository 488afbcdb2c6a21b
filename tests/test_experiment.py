"""The built-in A/B experiment: off by default; each family drawn once into arm A or B; arm B's reminders carry the
wording under test; the statistics give each arm's no-show rate with its count and 95 % confidence interval."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import select

from lapins.infra.extensions import db as _db
from lapins.models import Channel, Message, MessageKind, MessageStatus, RdvStatus, Role, Territory
from lapins.notifications import experiment, outbox
from lapins.stats.experiment import wilson
from tests.conftest import csrf_token_from

NOW = datetime(2026, 10, 19, 8, 0, tzinfo=timezone.utc)
WORDING_A = "Pensez au carnet de santé."
WORDING_B = "Prévenez si vous ne venez pas."


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture()
def service(factories):
    territory = factories.TerritoryFactory(number="59", sms_note_reminder=WORDING_A)
    organisation = factories.OrganisationFactory(territory=territory, name="PMI")
    lieu = factories.LieuFactory(organisation=organisation, name="PMI", address="1 rue Hoche", phone=None)
    motif = factories.MotifFactory(organisation=organisation, name="Pesée")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT)
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    return type("Service", (), dict(territory=territory, organisation=organisation, lieu=lieu, motif=motif,
                                    agent=agent, admin=admin))


def start(territory: Territory, at: datetime = NOW - timedelta(days=60)) -> None:
    territory.experiment_note_b, territory.experiment_started_at, territory.experiment_ended_at = WORDING_B, at, None
    _db.session.commit()


def test_each_family_is_drawn_once_and_the_arms_are_balanced(service):
    start(service.territory)
    draws = [experiment.arm(service.territory, family) for family in range(1, 2001)]
    assert 900 <= draws.count("A") <= 1100
    assert draws == [experiment.arm(service.territory, family) for family in range(1, 2001)]  # stable
    start(service.territory, NOW)  # a new experiment draws anew
    assert draws != [experiment.arm(service.territory, family) for family in range(1, 2001)]


def test_arm_b_reminders_carry_the_wording_under_test_and_a_the_usual_one(service, factories):
    start(service.territory)
    by_arm = {}
    for index in range(40):
        mother = factories.UsagerFactory(territory=service.territory, organisations=[service.organisation],
                                         phone=f"+336120000{index:02d}", sms_consent=True)
        child = factories.UsagerFactory(territory=service.territory, organisations=[service.organisation],
                                        phone=None, responsible=mother)
        by_arm.setdefault(experiment.arm(service.territory, mother.id), child)
    texts = {}
    for name, child in by_arm.items():
        rdv = factories.RdvFactory(motif=service.motif, lieu=service.lieu, starts_at=NOW + timedelta(days=3),
                                   usagers=[child])
        message = Message(territory_id=service.territory.id, rdv=rdv, usager=child.responsible, channel=Channel.SMS,
                          kind=MessageKind.REMINDER, due_at=NOW, status=MessageStatus.PENDING)
        _db.session.add(message)
        _db.session.commit()
        texts[name] = outbox.compose_sms(message)
    assert WORDING_A in texts["A"] and WORDING_B not in texts["A"]
    assert WORDING_B in texts["B"] and WORDING_A not in texts["B"]
    service.territory.experiment_ended_at = NOW
    _db.session.commit()
    stopped = _db.session.scalars(select(Message).where(Message.kind == MessageKind.REMINDER)).all()
    assert all(WORDING_A in outbox.compose_sms(message) for message in stopped)


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert wilson(0, 20)[0] == 0.0 and wilson(0, 0) is None


def test_the_statistics_give_each_arms_rate_count_and_interval(client, auth, service, factories):
    start(service.territory)
    made = {"A": 0, "B": 0}
    index = 0
    while min(made.values()) < 100:
        index += 1
        family = factories.UsagerFactory(territory=service.territory, organisations=[service.organisation])
        name = experiment.arm(service.territory, family.id)
        if made[name] >= 100:
            continue
        missed = made[name] < (10 if name == "A" else 25)
        factories.RdvFactory(motif=service.motif, lieu=service.lieu, usagers=[family],
                             starts_at=NOW - timedelta(days=1, minutes=index),
                             status=RdvStatus.NOSHOW if missed else RdvStatus.SEEN)
        made[name] += 1
    # Before the experiment, and cancelled: not counted.
    factories.RdvFactory(motif=service.motif, usagers=[family], starts_at=NOW - timedelta(days=90),
                         status=RdvStatus.NOSHOW)
    factories.RdvFactory(motif=service.motif, usagers=[family], starts_at=NOW - timedelta(days=2),
                         status=RdvStatus.EXCUSED)
    auth.login(service.agent)
    html = client.get(f"/statistiques/organisation/{service.organisation.id}").get_data(as_text=True)
    table = " ".join(html[html.index('id="tableau-experience"'):].split("</table>")[0].split())
    assert f"<th scope=\"row\">A</th><td>{WORDING_A}</td><td>100</td> <td>10</td><td>10,0 %</td> " \
           "<td>5,5 % à 17,4 %</td>" in table
    assert f"<th scope=\"row\">B</th><td>{WORDING_B}</td><td>100</td> <td>25</td><td>25,0 %</td>" in table


def test_no_experiment_by_default_and_nothing_shown(client, auth, service):
    assert not experiment.running(service.territory)
    auth.login(service.agent)
    assert 'id="tableau-experience"' not in client.get(
        f"/statistiques/organisation/{service.organisation.id}").get_data(as_text=True)


def test_the_administrator_starts_and_stops_it_from_the_settings(client, auth, service):
    auth.login(service.admin)
    settings = f"/territoires/{service.territory.id}/parametres"
    token = csrf_token_from(client.get(settings).get_data(as_text=True))
    refused = client.post(f"{settings}/experience", data={"csrf_token": token, "running": "y", "note_b": ""})
    assert refused.status_code == 422 and "Écrivez la phrase de la variante B" in refused.get_data(as_text=True)
    same = client.post(f"{settings}/experience", data={"csrf_token": token, "running": "y", "note_b": WORDING_A})
    assert same.status_code == 422 and "reprend la phrase habituelle" in same.get_data(as_text=True)
    _db.session.expire_all()
    assert _db.session.get(Territory, service.territory.id).experiment_started_at is None

    assert client.post(f"{settings}/experience", data={"csrf_token": token, "running": "y",
                                                         "note_b": WORDING_B}).status_code == 302
    _db.session.expire_all()
    territory = _db.session.get(Territory, service.territory.id)
    assert territory.experiment_started_at == NOW and experiment.running(territory)
    assert client.post(f"{settings}/experience", data={"csrf_token": token, "note_b": WORDING_B}).status_code == 302
    _db.session.expire_all()
    territory = _db.session.get(Territory, service.territory.id)
    assert territory.experiment_ended_at == NOW and not experiment.running(territory)
