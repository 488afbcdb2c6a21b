"""Statistics of an organisation and a territory: monthly figures in the territory's zone, filters, permissions."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from lapins.models import (
    Channel, Message, MessageKind, MessageStatus, OfferStatus, RdvStatus, Role, SlotOffer, SlotStatus, WaitlistSlot,
)
from lapins.models.rdvs import CancellationChannel, Canceller, MoveChannel, RdvMove
from lapins.stats.figures import Filters, Scope, chart_series, monthly_figures, totals

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
NOW = datetime(2026, 11, 15, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def local(tz: ZoneInfo, *args) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(timezone.utc)


def make_rdv(factories, motif, agent, starts_at, status=RdvStatus.SEEN, created_at=None, cancelled_at=None,
             lieu=None, minutes=30):
    cancelled = status in (RdvStatus.EXCUSED, RdvStatus.REVOKED)
    return factories.RdvFactory(
        motif=motif, lieu=lieu, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=minutes), status=status,
        agents=[agent], created_at=created_at or starts_at - timedelta(days=20),
        cancelled_at=cancelled_at if cancelled else None,
        cancelled_via=(CancellationChannel.LINK if status == RdvStatus.EXCUSED else CancellationChannel.AGENDA)
        if cancelled else None,
        cancelled_by_party=(Canceller.FAMILY if status == RdvStatus.EXCUSED else Canceller.AGENT) if cancelled else None)


def offer_slot(factories, db, agent, motif, starts_at, statuses, lieu=None, offered_at=None, source_rdv=None):
    """A freed slot of `agent` and the offers made of it to waiting families, one per status, in that order."""
    slot = WaitlistSlot(organisation_id=motif.organisation_id, motif_id=motif.id, lieu_id=lieu.id if lieu else None,
                        agent_id=agent.id, starts_at=starts_at, ends_at=starts_at + timedelta(minutes=30),
                        source_rdv_id=source_rdv.id if source_rdv else None,
                        status=SlotStatus.TAKEN if OfferStatus.ACCEPTED in statuses else SlotStatus.OPEN)
    db.session.add(slot)
    db.session.flush()
    offered_at = offered_at or starts_at - timedelta(hours=20)
    for index, status in enumerate(statuses):
        entry = factories.WaitlistEntryFactory(motif=motif)
        sent = offered_at + timedelta(minutes=40 * index)
        db.session.add(SlotOffer(slot_id=slot.id, entry_id=entry.id, usager_id=entry.usager_id, status=status,
                                 offered_at=sent, held_until=sent + timedelta(minutes=30),
                                 answered_at=sent + timedelta(minutes=10) if status in (
                                     OfferStatus.ACCEPTED, OfferStatus.DECLINED) else None))
    db.session.commit()
    return slot


@pytest.fixture()
def paris(factories, db):
    """October 2026 in a Paris organisation, built by hand: 9 rdvs, 1 no-show out of 5 known, 3 cancellations,
    3 waiting-list offers of which 1 accepted (and 1 offer sent in October of a November slot)."""
    organisation = factories.OrganisationFactory(territory__number="75", territory__name="Paris",
                                                 territory__timezone="Europe/Paris", name="PMI Paris 11")
    territory = organisation.territory
    lieu = factories.LieuFactory(organisation=organisation, name="Centre Belleville")
    motif = factories.MotifFactory(organisation=organisation, name="Consultation nourrisson")
    other_motif = factories.MotifFactory(organisation=organisation, name="Vaccination")
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, last_name="Martin")
    colleague = factories.AgentFactory(organisation=organisation, organisation__role=Role.AGENT, last_name="Bernard")
    admin = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN, last_name="Petit")
    usager = factories.UsagerFactory(territory=territory, first_name="Awa", last_name="Diallo", phone="+33612345678")

    seen = make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 5, 9), lieu=lieu)
    seen.usagers.append(usager)
    make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 6, 9))
    make_rdv(factories, other_motif, agent, local(PARIS, 2026, 10, 7, 9), status=RdvStatus.NOSHOW)
    late = make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 12, 10), status=RdvStatus.EXCUSED,
                    cancelled_at=local(PARIS, 2026, 10, 11, 10))  # 24 h before: late
    # Its time is booked again 6 h after the cancellation (overlapping, not identical).
    make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 12, 10, 15), status=RdvStatus.UNKNOWN,
             created_at=local(PARIS, 2026, 10, 11, 16))
    make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 14, 10), status=RdvStatus.EXCUSED,
             cancelled_at=local(PARIS, 2026, 10, 11, 10))  # 72 h before: not late
    revoked = make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 20, 14), status=RdvStatus.REVOKED,
                       cancelled_at=local(PARIS, 2026, 10, 19, 8))
    # The same time for another agent, after the cancellation: not a re-booking of this agent's slot.
    make_rdv(factories, motif, colleague, local(PARIS, 2026, 10, 20, 14), created_at=local(PARIS, 2026, 10, 19, 9))
    # 23:30 on the last day of October, local time: October.
    make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 31, 23, 30))
    # 00:30 on 1 November, local time (still 31 October in UTC): November.
    make_rdv(factories, motif, agent, local(PARIS, 2026, 11, 1, 0, 30), status=RdvStatus.NOSHOW)

    for status, segments in ((MessageStatus.SENT, 2), (MessageStatus.DELIVERED, 1), (MessageStatus.FAILED, 1)):
        db.session.add(Message(territory_id=territory.id, rdv_id=seen.id, channel=Channel.SMS,
                               kind=MessageKind.REMINDER, status=status, segments=segments,
                               due_at=local(PARIS, 2026, 10, 3, 10), sent_at=local(PARIS, 2026, 10, 3, 10)))
    db.session.add(Message(territory_id=territory.id, rdv_id=seen.id, channel=Channel.EMAIL, kind=MessageKind.CREATED,
                           status=MessageStatus.SENT, due_at=local(PARIS, 2026, 10, 3, 10)))
    db.session.commit()

    # The slot the late cancellation freed: declined by one family, accepted by the next.
    offer_slot(factories, db, agent, motif, late.starts_at, [OfferStatus.DECLINED, OfferStatus.ACCEPTED],
               source_rdv=late)
    offer_slot(factories, db, agent, motif, revoked.starts_at, [OfferStatus.EXPIRED], source_rdv=revoked)
    # Offered on 30 October, for a slot of 2 November: counts in November, the slot's month.
    offer_slot(factories, db, colleague, other_motif, local(PARIS, 2026, 11, 2, 9), [OfferStatus.HELD], lieu=lieu,
               offered_at=local(PARIS, 2026, 10, 30, 9))
    return type("Paris", (), dict(organisation=organisation, territory=territory, lieu=lieu, motif=motif,
                                  other_motif=other_motif, agent=agent, colleague=colleague, admin=admin,
                                  late=late, revoked=revoked, usager=usager))


def october(figures):
    return next(month for month in figures if month.month == date(2026, 10, 1))


def scope_of(organisation) -> Scope:
    return Scope(organisation.territory.id, organisation.territory.timezone, (organisation.id,))


def table_row(page: str, month: str) -> list[str]:
    row = re.search(rf'<tr data-month="{month}">(.*?)</tr>', page, re.S).group(1)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", row, re.S)]


def test_the_figures_of_a_month_are_counted_from_the_rdvs(paris):
    figures = monthly_figures(scope_of(paris.organisation), Filters(date(2026, 10, 1), date(2026, 11, 1)))
    oct_, nov = figures
    assert (oct_.rdvs, oct_.seen, oct_.noshow, oct_.excused, oct_.revoked) == (9, 4, 1, 2, 1)
    assert oct_.noshow_rate == pytest.approx(1 / 5)
    assert oct_.cancellation_rate == pytest.approx(3 / 9)
    assert oct_.late_cancellations == 1
    assert oct_.rebooked == 1 and oct_.median_rebook_hours == pytest.approx(6)
    assert (oct_.offers, oct_.offers_accepted) == (3, 1) and oct_.acceptance_rate == pytest.approx(1 / 3)
    assert (oct_.sms_sent, oct_.sms_segments) == (2, 3)  # the failed SMS and the e-mail do not count
    assert (nov.rdvs, nov.noshow) == (1, 1)  # 00:30 local on 1 November
    assert (nov.offers, nov.offers_accepted, nov.acceptance_rate) == (1, 0, 0)  # sent in October, slot in November
    total = totals(figures)
    assert (total.offers, total.offers_accepted) == (4, 1)
    chart = chart_series(figures)
    assert chart["name"][2] == "Taux d’acceptation des propositions" and chart["y"][2] == [33.3, 0.0]


def test_moves_by_the_family_count_apart_from_cancellations_in_the_month_of_the_time_left(client, auth, factories,
                                                                                           db, paris):
    moved = make_rdv(factories, paris.motif, paris.agent, local(PARIS, 2026, 11, 3, 9), RdvStatus.UNKNOWN)
    for left in (local(PARIS, 2026, 10, 29, 9), local(PARIS, 2026, 10, 30, 9)):  # moved twice, to November at last
        db.session.add(RdvMove(rdv_id=moved.id, via=MoveChannel.LINK, moved_at=left - timedelta(days=2),
                               from_starts_at=left, to_starts_at=left + timedelta(days=1)))
    db.session.commit()
    oct_, nov = monthly_figures(scope_of(paris.organisation), Filters(date(2026, 10, 1), date(2026, 11, 1)))
    assert (oct_.family_moves, nov.family_moves) == (2, 0)
    assert (oct_.excused, oct_.revoked) == (2, 1) and nov.rdvs == 2  # neither a cancellation nor another rdv
    other_motif = Filters(date(2026, 10, 1), date(2026, 11, 1), motif_id=paris.other_motif.id)
    assert october(monthly_figures(scope_of(paris.organisation), other_motif)).family_moves == 0
    auth.login(paris.agent)
    page = client.get(f"/statistiques/organisation/{paris.organisation.id}?du=2026-10&au=2026-11").get_data(
        as_text=True)
    assert "Déplacés par la famille" in page and table_row(page, "2026-10")[9] == "2"


def test_offers_follow_the_filters_and_the_territory(client, auth, factories, db, paris):
    sister = factories.OrganisationFactory(territory=paris.territory, name="PMI Paris 20")
    sister_agent = factories.AgentFactory(organisation=sister)
    offer_slot(factories, db, sister_agent, factories.MotifFactory(organisation=sister),
               local(PARIS, 2026, 10, 9, 9), [OfferStatus.ACCEPTED, OfferStatus.VOID])
    scope, period = scope_of(paris.organisation), (date(2026, 10, 1), date(2026, 11, 1))

    def offers(**filters):
        return [(month.offers, month.offers_accepted) for month in monthly_figures(scope, Filters(*period, **filters))]

    assert offers() == [(3, 1), (1, 0)]
    assert offers(agent_id=paris.colleague.id) == [(0, 0), (1, 0)]
    assert offers(agent_id=paris.agent.id) == [(3, 1), (0, 0)]
    assert offers(lieu_id=paris.lieu.id) == [(0, 0), (1, 0)]
    assert offers(motif_id=paris.other_motif.id) == [(0, 0), (1, 0)]
    assert offers(motif_id=paris.motif.id) == [(3, 1), (0, 0)]

    auth.login(paris.admin)
    page = client.get(f"/statistiques/territoire/{paris.territory.id}?du=2026-10&au=2026-11").get_data(as_text=True)
    assert table_row(page, "2026-10")[12:15] == ["5", "2", "40,0 %"]  # the sister organisation's offers too
    assert table_row(page, "total")[12:15] == ["6", "2", "33,3 %"]


def test_the_page_shows_the_figures_in_an_accessible_table_and_a_chart(client, auth, paris):
    auth.login(paris.agent)
    response = client.get(f"/statistiques/organisation/{paris.organisation.id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert table_row(page, "2026-10") == ["octobre 2026", "9", "4", "1", "20,0\u00a0%", "2", "1", "33,3\u00a0%", "1",
                                          "0", "1", "6,0\u00a0h", "3", "1", "33,3\u00a0%", "2", "3"]
    assert table_row(page, "2026-11")[12:15] == ["1", "0", "0,0\u00a0%"]
    assert table_row(page, "2026-11")[:5] == ["novembre 2026", "1", "0", "1", "100,0\u00a0%"]
    assert table_row(page, "2025-12")[1] == "0"  # the default period: the last 12 months
    assert len(re.findall(r'<tr data-month="\d{4}-\d\d">', page)) == 12
    assert '<caption>Chiffres par mois</caption>' in page and '<th scope="col">Taux d\'absence</th>' in page
    assert "<th scope=\"col\">Propositions acceptées</th>" in page and "1 sur 4" in page  # the tile of the period
    assert page.count("<line-chart") == 1 and "dsfr-chart/DSFRChart/DSFRChart.js" in page
    assert "Diallo" not in page


def test_the_chart_library_is_served_from_npm(client, auth, paris):
    auth.login(paris.agent)
    assert client.get("/vendor/dsfr-chart/DSFRChart/DSFRChart.js").status_code == 200
    assert client.get("/vendor/dsfr-chart/DSFRChart/DSFRChart.css").status_code == 200


def test_a_reunion_rdv_late_on_the_last_day_counts_in_its_local_month(client, auth, factories):
    organisation = factories.OrganisationFactory(territory__number="974", territory__name="La Réunion",
                                                 territory__timezone="Indian/Reunion")
    motif = factories.MotifFactory(organisation=organisation)
    agent = factories.AgentFactory(organisation=organisation, organisation__role=Role.ADMIN)
    make_rdv(factories, motif, agent, local(REUNION, 2026, 9, 30, 23, 30))  # 19:30 UTC, 30 September
    make_rdv(factories, motif, agent, local(REUNION, 2026, 10, 1, 0, 30), status=RdvStatus.NOSHOW)  # 20:30 UTC, 30/09
    make_rdv(factories, motif, agent, local(REUNION, 2026, 10, 31, 23, 30), status=RdvStatus.NOSHOW)
    figures = monthly_figures(scope_of(organisation), Filters(date(2026, 9, 1), date(2026, 11, 1)))
    assert [(month.rdvs, month.seen, month.noshow) for month in figures] == [(1, 1, 0), (2, 0, 2), (0, 0, 0)]

    auth.login(agent)
    page = client.get(f"/statistiques/territoire/{organisation.territory.id}?du=2026-09&au=2026-10").get_data(as_text=True)
    assert table_row(page, "2026-09")[1:5] == ["1", "1", "0", "0,0\u00a0%"]
    assert table_row(page, "2026-10")[1:5] == ["2", "0", "2", "100,0\u00a0%"]


def test_filters_by_lieu_agent_and_motif(client, auth, paris):
    auth.login(paris.agent)
    base = f"/statistiques/organisation/{paris.organisation.id}?du=2026-10&au=2026-10"
    by_lieu = client.get(f"{base}&lieu={paris.lieu.id}").get_data(as_text=True)
    assert table_row(by_lieu, "2026-10")[1:3] == ["1", "1"]
    assert table_row(by_lieu, "2026-10")[15:] == ["2", "3"]  # the SMS of that lieu's rdv
    by_agent = client.get(f"{base}&agent={paris.colleague.id}").get_data(as_text=True)
    assert table_row(by_agent, "2026-10")[1:3] == ["1", "1"]
    assert table_row(by_agent, "2026-10")[12:] == ["0", "0", "—", "0", "0"]  # neither offers nor SMS of hers
    by_motif = client.get(f"{base}&motif={paris.other_motif.id}").get_data(as_text=True)
    assert table_row(by_motif, "2026-10")[1:5] == ["1", "0", "1", "100,0\u00a0%"]


def test_a_territory_counts_all_its_organisations_for_its_administrators(client, auth, factories, paris):
    sister = factories.OrganisationFactory(territory=paris.territory, name="PMI Paris 20")
    motif = factories.MotifFactory(organisation=sister)
    agent = factories.AgentFactory(organisation=sister)
    make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 8, 9), status=RdvStatus.NOSHOW)
    auth.login(paris.admin)
    page = client.get(f"/statistiques/territoire/{paris.territory.id}?du=2026-10&au=2026-10").get_data(as_text=True)
    assert table_row(page, "2026-10")[1:5] == ["10", "4", "2", "33,3\u00a0%"]
    organisation_page = client.get(f"/statistiques/organisation/{paris.organisation.id}").get_data(as_text=True)
    assert "Voir tout le territoire" in organisation_page


def test_the_statistics_menu_entry_leads_to_the_agents_organisation(client, auth, paris):
    auth.login(paris.agent)
    response = client.get("/statistiques/")
    assert response.status_code == 302
    assert response.location.endswith(f"/statistiques/organisation/{paris.organisation.id}")


def test_agents_elsewhere_cannot_see_the_figures(client, auth, factories, paris):
    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)
    auth.login(stranger)
    org, territory = paris.organisation.id, paris.territory.id
    assert client.get(f"/statistiques/organisation/{org}").status_code == 404
    assert client.get(f"/statistiques/organisation/{org}/statistiques.csv").status_code == 404
    assert client.get(f"/statistiques/territoire/{territory}").status_code == 404
    assert client.get(f"/statistiques/territoire/{territory}/statistiques.xlsx").status_code == 404
    assert client.get("/statistiques/organisation/999999").status_code == 404


def test_a_territory_is_for_administrators_only(client, auth, paris):
    auth.login(paris.agent)
    assert client.get(f"/statistiques/territoire/{paris.territory.id}").status_code == 403
    assert client.get(f"/statistiques/territoire/{paris.territory.id}/statistiques.csv").status_code == 403
    page = client.get(f"/statistiques/organisation/{paris.organisation.id}").get_data(as_text=True)
    assert "Voir tout le territoire" not in page


def test_the_pages_need_a_signed_in_agent(client, paris):
    response = client.get(f"/statistiques/organisation/{paris.organisation.id}")
    assert response.status_code == 302 and "/connexion" in response.location


@pytest.mark.parametrize("query, message", [
    ("du=2026-13", "Le mois de début n'est pas un mois valide"),
    ("au=demain", "Le mois de fin n'est pas un mois valide"),
    ("du=2026-10&au=2026-01", "Le mois de début doit précéder le mois de fin"),
    ("du=2020-01&au=2026-10", "Le mois de début est hors de l'historique : les statistiques d'ici vont de décembre 2025 "
                              "à novembre 2026"),
    ("au=2099-12", "Le mois de fin est hors de l'historique"),
    ("du=1990-01", "Le mois de début est hors de l'historique"),
    ("du=0990-01", "Le mois de début n'est pas un mois valide"),
    ("lieu=999999", "Le lieu demandé n'existe pas ici"),
    ("agent=abc", "L'agent demandé n'existe pas ici"),
    ("motif=" + "9" * 5000, "Le motif demandé n'existe pas ici"),
    ("du=" + "x" * 20000, "Le mois de début n'est pas un mois valide"),
])
def test_bad_parameters_get_a_french_message(client, auth, paris, query, message):
    auth.login(paris.agent)
    response = client.get(f"/statistiques/organisation/{paris.organisation.id}?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True).replace("&#39;", "'")
    csv_response = client.get(f"/statistiques/organisation/{paris.organisation.id}/statistiques.csv?{query}")
    assert csv_response.status_code == 400
    assert message in csv_response.get_data(as_text=True).replace("&#39;", "'")


def test_the_page_opens_on_the_last_twelve_months_and_the_picker_stays_within_the_history(client, auth, factories,
                                                                                          paris):
    auth.login(paris.agent)
    page = client.get(f"/statistiques/organisation/{paris.organisation.id}").get_data(as_text=True)
    assert 'id="du" name="du" maxlength="7" min="2025-12" max="2026-11" value="2025-12"' in page
    assert 'id="au" name="au" maxlength="7" min="2025-12" max="2026-11" value="2026-11"' in page
    # Imported history four years back: the picker reaches it, and the 36-month limit still holds.
    make_rdv(factories, paris.motif, paris.agent, local(PARIS, 2022, 5, 10, 9))
    page = client.get(f"/statistiques/organisation/{paris.organisation.id}").get_data(as_text=True)
    assert 'min="2022-05" max="2026-11"' in page
    response = client.get(f"/statistiques/organisation/{paris.organisation.id}?du=2022-05&au=2026-10")
    assert response.status_code == 400 and "La période ne peut dépasser 36 mois" in response.get_data(as_text=True)
    assert client.get(f"/statistiques/organisation/{paris.organisation.id}?du=2022-05&au=2024-05").status_code == 200


def test_a_lieu_of_another_organisation_is_refused(client, auth, factories, paris):
    elsewhere = factories.LieuFactory()
    auth.login(paris.agent)
    response = client.get(f"/statistiques/organisation/{paris.organisation.id}?lieu={elsewhere.id}")
    assert response.status_code == 400 and "Le lieu demandé n&#39;existe pas ici" in response.get_data(as_text=True)


def test_a_freed_time_counts_once_re_booked_by_the_first_live_rdv_of_its_agents_taken_after_it(factories):
    """Re-bookings: several rdvs in one freed time, before and after the cancellation, another agent's, a cancelled
    one, one that only touches it, two cancelled rdvs of one time, a joint rdv."""
    organisation = factories.OrganisationFactory(territory__timezone="Europe/Paris")
    motif = factories.MotifFactory(organisation=organisation)
    agent, other, partner = (factories.AgentFactory(organisation=organisation) for _ in range(3))
    day, cancelled_at = (2026, 10, 12), local(PARIS, 2026, 10, 9, 12)

    def at(hour, minute=0):
        return local(PARIS, *day, hour, minute)

    def after(minutes):
        return cancelled_at + timedelta(minutes=minutes)

    # 10:00, cancelled: taken again at 10:15 (after 60 min) and at 10:00 (after 120 min): the first counts, once.
    make_rdv(factories, motif, agent, at(10), status=RdvStatus.EXCUSED, cancelled_at=cancelled_at)
    make_rdv(factories, motif, agent, at(10), status=RdvStatus.UNKNOWN, created_at=after(120))
    make_rdv(factories, motif, agent, at(10, 15), status=RdvStatus.SEEN, created_at=after(60))
    # Not re-bookings of that time, though earlier: booked before the cancellation (a forced double booking), another
    # agent's, one cancelled in turn (whose own time the 10:15 rdv re-books, 40 min after), ones that end when it
    # starts or start when it ends.
    make_rdv(factories, motif, agent, at(10), status=RdvStatus.SEEN, created_at=after(-30))
    make_rdv(factories, motif, other, at(10), created_at=after(5))
    make_rdv(factories, motif, agent, at(10), status=RdvStatus.REVOKED, created_at=after(10),
             cancelled_at=after(20))
    make_rdv(factories, motif, agent, at(9, 30), created_at=after(1))
    make_rdv(factories, motif, agent, at(10, 30), created_at=after(2))
    # 14:00, cancelled: only another agent's rdv and a cancelled one take its time: not re-booked.
    make_rdv(factories, motif, agent, at(14), status=RdvStatus.EXCUSED, cancelled_at=cancelled_at)
    make_rdv(factories, motif, other, at(14), created_at=after(3))
    make_rdv(factories, motif, agent, at(14), status=RdvStatus.EXCUSED, created_at=after(4), cancelled_at=after(6))
    # 16:00, two cancelled rdvs of one time (at 12:00 and 18:00 the day before); one rdv taken after both re-books
    # the time of each, timed from each one's cancellation.
    make_rdv(factories, motif, agent, at(16), status=RdvStatus.EXCUSED, cancelled_at=cancelled_at)
    make_rdv(factories, motif, agent, at(16), status=RdvStatus.REVOKED, cancelled_at=after(360))
    make_rdv(factories, motif, agent, at(16), created_at=after(480))
    # 17:00, a joint rdv of two agents, cancelled: the partner's rdv taken after it re-books it, counted once though
    # both agents are then busy again at that time.
    joint = make_rdv(factories, motif, agent, at(17), status=RdvStatus.EXCUSED, cancelled_at=cancelled_at,
                     minutes=60)
    joint.set_agents([agent, partner])
    make_rdv(factories, motif, partner, at(17, 30), created_at=after(30))
    make_rdv(factories, motif, agent, at(17), created_at=after(45))
    # An rdv that began the evening before and overlaps 08:00: long rdvs up to a day are looked for.
    make_rdv(factories, motif, agent, at(8), status=RdvStatus.EXCUSED, cancelled_at=cancelled_at)
    make_rdv(factories, motif, agent, local(PARIS, 2026, 10, 11, 20), created_at=after(90), minutes=12 * 60 + 15)

    october = monthly_figures(scope_of(organisation), Filters(date(2026, 10, 1), date(2026, 10, 1)))[0]
    assert october.excused + october.revoked == 8
    assert october.rebooked == 6  # not the 14:00 ones
    assert sorted(seconds / 60 for seconds in october.rebook_seconds) == [30, 40, 60, 90, 120, 480]
    assert october.median_rebook_hours == pytest.approx(1.25)
    by_partner = monthly_figures(scope_of(organisation), Filters(date(2026, 10, 1), date(2026, 10, 1),
                                                                 agent_id=partner.id))[0]
    assert (by_partner.rebooked, by_partner.rebook_seconds) == (1, [1800.0])
