"""Demo data and département-scale data: what a person trying the demo or reading a benchmark relies on."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from types import SimpleNamespace

import pytest
import time_machine
from sqlalchemy import func, select

from lapins.booking import cancel_rdv
from lapins.onboarding import seeding
from lapins.slots.availability import covering_opening
from lapins.models import (
    Agent, EntryStatus, Motif, Organisation, PlageOuverture, Rdv, RdvAgent, RdvStatus, SlotOffer, Territory, Usager,
    WaitlistEntry,
)
from lapins.waitlist import offers
from lapins.locale.phones import normalize_mobile
from tests.conftest import AuthActions

# A Wednesday four days before the switch to summer time: demo rdvs straddle the DST change.
FROZEN = datetime(2026, 3, 25, 9, 30, tzinfo=timezone.utc)


@pytest.fixture()
def demo(db):
    with time_machine.travel(FROZEN, tick=False):
        yield seeding.seed_demo()


def overlapping_live_pairs(db) -> int:
    a, b = RdvAgent.__table__.alias("a"), RdvAgent.__table__.alias("b")
    return db.session.scalar(select(func.count()).select_from(a).join(b, (a.c.agent_id == b.c.agent_id)
                                                                      & (a.c.rdv_id < b.c.rdv_id)).where(
        a.c.live, b.c.live, a.c.starts_at < b.c.ends_at, b.c.starts_at < a.c.ends_at))


def territory(db, number: str) -> Territory:
    return db.session.scalar(select(Territory).where(Territory.number == number))


def test_every_demo_login_opens_the_agenda(demo, auth, app):
    assert len(demo) == 8
    for index, (email, password, role_label) in enumerate(demo):
        assert len(password) >= 12 and role_label
        actions = auth if index == 0 else AuthActions(app.test_client())
        response = actions.login(SimpleNamespace(email=email), password)
        assert response.status_code == 302 and "/connexion" not in response.headers["Location"], email


def test_a_wrong_demo_password_is_refused(demo, auth):
    response = auth.login(SimpleNamespace(email=demo[0][0]), "pas-le-bon-mot-de-passe")
    assert response.status_code == 422


def test_demo_has_two_territories_in_their_own_time_zones(demo, db):
    assert territory(db, "92").timezone == "Europe/Paris"
    assert territory(db, "974").timezone == "Indian/Reunion"
    reunion_rdvs = db.session.scalars(select(Rdv).join(Organisation).join(Territory)
                                      .where(Territory.number == "974")).all()
    assert reunion_rdvs
    # Plages there run from 08:00 to 16:00 local time, i.e. 04:00 to 12:00 UTC.
    assert {rdv.starts_at.astimezone(territory(db, "974").tz).hour for rdv in reunion_rdvs} <= set(range(8, 16))
    assert min(rdv.starts_at.hour for rdv in reunion_rdvs) < 8


def test_demo_plages_open_the_next_thirteen_weeks(demo, db):
    plages = db.session.scalars(select(PlageOuverture)).all()
    assert len(plages) >= 15
    assert all(plage.motifs for plage in plages)
    today = FROZEN.date()
    assert all(plage.last_day >= today + timedelta(weeks=12) for plage in plages)
    names = set(db.session.scalars(select(Motif.name)))
    assert {"Consultation nourrisson", "Consultation prénatale", "Visite à domicile", "Entretien téléphonique",
            "Bilan de santé en école maternelle"} <= names


def test_demo_rdvs_have_a_past_to_fill_in_and_a_future(demo, db):
    rdvs = db.session.scalars(select(Rdv)).all()
    past = [rdv for rdv in rdvs if rdv.starts_at < FROZEN]
    future = [rdv for rdv in rdvs if rdv.starts_at >= FROZEN]
    assert len(past) > 50 and len(future) > 50
    assert {RdvStatus.SEEN, RdvStatus.NOSHOW, RdvStatus.EXCUSED, RdvStatus.UNKNOWN} <= {rdv.status for rdv in past}
    assert {rdv.status for rdv in future} <= {RdvStatus.UNKNOWN, RdvStatus.EXCUSED, RdvStatus.REVOKED}
    assert all(rdv.usagers and len(rdv.agents) == 1 for rdv in rdvs)
    assert all(rdv.cancelled_at is not None for rdv in rdvs if rdv.status.is_cancelled)


def test_demo_rdvs_keep_local_opening_hours_across_the_dst_change(demo, db):
    paris = territory(db, "92").tz
    rdvs = db.session.scalars(select(Rdv).join(Organisation).join(Territory).where(Territory.number == "92")).all()
    change = datetime(2026, 3, 29, 1, tzinfo=timezone.utc)
    for side in ([rdv for rdv in rdvs if rdv.starts_at < change], [rdv for rdv in rdvs if rdv.starts_at > change]):
        local_starts = {rdv.starts_at.astimezone(paris).time() for rdv in side}
        # Plages open at 09:00 at the earliest and close at 17:00: a shifted hour would show on one side.
        assert min(local_starts) == time(9) and max(local_starts) < time(17)


def test_demo_rdvs_sit_inside_their_agents_openings_without_double_booking(demo, db):
    assert overlapping_live_pairs(db) == 0
    live = [rdv for rdv in db.session.scalars(select(Rdv).order_by(Rdv.id)) if rdv.is_live]
    for rdv in live[::10]:
        assert covering_opening(agent_ids=[a.id for a in rdv.agents], motif_id=rdv.motif_id, lieu_id=rdv.lieu_id,
                                starts_at=rdv.starts_at, ends_at=rdv.ends_at,
                                territory=rdv.organisation.territory), rdv.id


def test_demo_usagers_have_valid_mobile_numbers(demo, db):
    usagers = db.session.scalars(select(Usager)).all()
    responsible = [usager for usager in usagers if usager.responsible_id is None]
    children = [usager for usager in usagers if usager.responsible_id is not None]
    assert len(responsible) >= 40 and children
    for usager in responsible:
        assert usager.phone.startswith("+") and normalize_mobile(usager.phone, usager.territory.number) == usager.phone


def test_seeding_the_demo_twice_adds_nothing(demo, db):
    counts = db.session.scalar(select(func.count(Rdv.id))), db.session.scalar(select(func.count(Agent.id)))
    with time_machine.travel(FROZEN, tick=False):
        assert seeding.seed_demo() == demo
    assert (db.session.scalar(select(func.count(Rdv.id))), db.session.scalar(select(func.count(Agent.id)))) == counts


def test_small_departement_has_the_announced_size_and_no_double_booking(db):
    with time_machine.travel(FROZEN, tick=False):
        report = seeding.seed_departement(rdv_count=2000, progress=lambda message: None)
    counts = report.counts
    assert (counts["organisations"], counts["agents"], counts["lieux"], counts["usagers"]) == (10, 300, 60, 50_000)
    assert counts["rdvs"] == 2000 and counts["motifs"] == 200
    assert 0 < counts["rdvs à venir"] < 2000
    assert overlapping_live_pairs(db) == 0
    assert db.session.scalar(select(func.count()).select_from(RdvAgent)) == 2000
    mismatched = db.session.scalar(select(func.count()).select_from(RdvAgent).join(Rdv).where(
        (RdvAgent.starts_at != Rdv.starts_at) | (RdvAgent.ends_at != Rdv.ends_at)))
    assert mismatched == 0
    assert "2\u202f000" in str(report)


def test_departement_rdvs_sit_inside_openings(db):
    with time_machine.travel(FROZEN, tick=False):
        seeding.seed_departement(rdv_count=600, progress=lambda message: None, usagers=2000)
        live = [rdv for rdv in db.session.scalars(select(Rdv).order_by(Rdv.id)) if rdv.is_live]
        for rdv in live[::15]:
            assert covering_opening(agent_ids=[a.id for a in rdv.agents], motif_id=rdv.motif_id,
                                    lieu_id=rdv.lieu_id, starts_at=rdv.starts_at, ends_at=rdv.ends_at,
                                    territory=rdv.organisation.territory), rdv.id


def test_departement_is_reproducible_and_leaves_ids_usable(db):
    def seed_and_fingerprint():
        with time_machine.travel(FROZEN, tick=False):
            seeding.seed_departement(rdv_count=300, usagers=500, agents=30, organisations=3,
                                     progress=lambda message: None)
        rows = db.session.execute(select(Rdv.starts_at, Motif.name, Rdv.status, Rdv.lieu_id.is_(None))
                                  .join(Motif).order_by(Rdv.starts_at, Rdv.id)).all()
        return [tuple(row) for row in rows]

    first = seed_and_fingerprint()
    db.session.remove()
    with db.engine.begin() as connection:
        for table in reversed(db.metadata.sorted_tables):
            connection.execute(table.delete())
    assert seed_and_fingerprint() == first and len(first) == 300
    # An rdv created the ordinary way after a bulk load gets a fresh id (PostgreSQL's sequence was moved on).
    motif = db.session.scalar(select(Motif).limit(1))
    rdv = Rdv(organisation_id=motif.organisation_id, motif_id=motif.id, starts_at=FROZEN,
              ends_at=FROZEN + timedelta(minutes=30))
    db.session.add(rdv)
    db.session.commit()
    assert rdv.id > max(db.session.scalars(select(Rdv.id).where(Rdv.id != rdv.id)))


def test_growing_the_history_keeps_the_coming_weeks(db):
    with time_machine.travel(FROZEN, tick=False):
        report = seeding.seed_departement(rdv_count=400, usagers=500, agents=30, organisations=3,
                                          progress=lambda message: None)
        coming = db.session.scalar(select(func.count(Rdv.id)).where(Rdv.starts_at >= FROZEN))
        added = seeding.add_past_rdvs(report.territory_id, 1500, progress=lambda message: None)
        assert added == 1500
        assert db.session.scalar(select(func.count(Rdv.id)).where(Rdv.starts_at >= FROZEN)) == coming
        assert db.session.scalar(select(func.count(Rdv.id))) == 1900
        assert seeding.add_future_rdvs(report.territory_id, progress=lambda message: None) > 0
    assert overlapping_live_pairs(db) == 0


def test_seeding_the_departement_twice_says_so(db):
    seeding.seed_departement(rdv_count=50, usagers=200, agents=20, organisations=2, progress=lambda message: None)
    report = seeding.seed_departement(rdv_count=50, progress=lambda message: None)
    assert "existe déjà" in str(report)


def test_a_demo_cancellation_is_offered_to_a_waiting_family_and_the_offer_shows_in_the_dev_inbox(demo, db, client):
    """Issue 19.16: the demo shows the reallocation loop, from a cancellation to the offer's SMS in the dev inbox."""
    paris = territory(db, "92")
    waiting = db.session.scalars(select(WaitlistEntry).join(Organisation).where(
        Organisation.territory_id == paris.id, WaitlistEntry.status == EntryStatus.ACTIVE)).all()
    assert waiting and all(offers._recipients(entry.usager) for entry in waiting)
    now = FROZEN + timedelta(hours=1)  # 11:30 in Paris: no quiet hours
    with time_machine.travel(now, tick=False):
        rdv = db.session.scalars(select(Rdv).join(Organisation).where(
            Organisation.territory_id == paris.id, Rdv.status == RdvStatus.UNKNOWN,
            Rdv.starts_at > now + timedelta(days=3), Rdv.motif_id.in_({entry.motif_id for entry in waiting}))
            .order_by(Rdv.starts_at)).first()
        agent = rdv.agents[0]
        cancel_rdv(actor=agent, rdv=rdv, status=RdvStatus.EXCUSED, reason="Appel de la famille")
        offers.reallocate(now)  # what the kicked task or the beat's next minute does
        [offer] = db.session.scalars(select(SlotOffer)).all()
        assert offer.slot.starts_at == rdv.starts_at and offer.entry.motif_id == rdv.motif_id
        AuthActions(client).login(agent, seeding.DEMO_PASSWORD)
        inbox = client.get("/dev/messages").get_data(as_text=True)
    assert "créneau libéré pour" in inbox and "Proposition de créneau" in inbox
