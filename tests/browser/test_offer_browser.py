"""A waiting family on its phone gets the SMS of a freed slot, opens its link and accepts it."""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from lapins.booking import book_rdv, cancel_rdv
from lapins.infra.extensions import db
from lapins.models import Channel, EntryStatus, Message, MessageKind, OfferStatus, Rdv, RdvStatus, SlotOffer
from tests import factories
from tests.browser.conftest import PHONE, SCREENSHOTS

pytestmark = pytest.mark.browser

REUNION = ZoneInfo("Indian/Reunion")


@pytest.fixture()
def offered(live_db, live_app):
    """A cancelled rdv in three days whose slot was offered (through the outbox, by SMS) to a waiting family."""
    organisation = factories.OrganisationFactory(territory__timezone="Indian/Reunion", territory__number="974",
                                                 territory__quiet_hours_start=time(0), territory__quiet_hours_end=time(0))
    lieu = factories.LieuFactory(organisation=organisation, name="Centre PMI Saint-Denis", phone="+262262901010")
    motif = factories.MotifFactory(organisation=organisation, name="Pesée du nourrisson")
    agent = factories.AgentFactory(organisation=organisation)
    day = (datetime.now(REUNION) + timedelta(days=3)).date()
    factories.PlageFactory(agent=agent, lieu=lieu, motifs=[motif], first_day=day - timedelta(days=1),
                           start_time=time(8), end_time=time(17), weekdays=0b1111111)
    leaving = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation])
    waiting = factories.UsagerFactory(territory=organisation.territory, organisations=[organisation],
                                      first_name="Noémie", last_name="Payet", phone="+262692123456")
    entry = factories.WaitlistEntryFactory(usager=waiting, motif=motif, organisation=organisation)
    rdv = book_rdv(actor=agent, motif=motif, agents=[agent], usagers=[leaving], lieu=lieu,
                   starts_at=datetime.combine(day, time(10), REUNION))
    cancel_rdv(actor=agent, rdv=rdv, status=RdvStatus.REVOKED, reason="Agent en formation")
    sms = live_db.session.scalar(select(Message).where(Message.kind == MessageKind.OFFER,
                                                       Message.channel == Channel.SMS))
    path = re.search(r"/o/\S+$", sms.body).group(0)  # the link as the family reads it in its SMS
    ids = dict(entry_id=entry.id, usager_id=waiting.id, starts_at=rdv.starts_at)
    live_db.session.remove()
    return ids, path


def test_a_family_accepts_an_offered_slot_from_its_phone(phone_page, offered, live_db):
    ids, path = offered
    page = phone_page
    page.goto(path)
    expect(page.get_by_role("heading", level=1)).to_have_text("Un créneau s'est libéré")
    expect(page.get_by_text("Centre PMI Saint-Denis")).to_be_visible()
    expect(page.get_by_text("Payet")).to_have_count(0)  # a forwarded link names nobody
    button = page.get_by_role("button", name="J'accepte")
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    button.click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Rendez-vous confirmé")
    expect(page.get_by_role("button", name="J'accepte")).to_have_count(0)
    page.screenshot(path=f"{SCREENSHOTS}/lapins-offer-accepted.png", full_page=True)

    offer = db.session.scalar(select(SlotOffer))
    assert offer.status == OfferStatus.ACCEPTED and offer.entry.status == EntryStatus.FULFILLED
    rdv = db.session.get(Rdv, offer.rdv_id)
    assert rdv.is_live and rdv.starts_at == ids["starts_at"] and [u.id for u in rdv.usagers] == [ids["usager_id"]]

    page.get_by_role("link", name="Voir mon rendez-vous").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Votre rendez-vous")
