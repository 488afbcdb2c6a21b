"""« Voir plus de dates » on the online booking page: each lieu's first free days, then a week at a time from a signed
cursor (a plain link), up to the motif's maximum delay; a forged, foreign or stale cursor told in French."""
from __future__ import annotations

import html
import re
from datetime import date, datetime, time, timezone

import pytest
import time_machine

from lapins.public import online
from tests.test_online_booking import START, give_details, make_clinic, page_text, search, slot_links

NOW = datetime(2026, 10, 19, 4, 0, tzinfo=timezone.utc)  # Monday 19 October, 08:00 in La Réunion


@pytest.fixture(autouse=True)
def frozen_time():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture()
def clinic(factories):
    return make_clinic(factories)  # 8:00–12:00 every day, 2 hours to 14 days ahead


def more_link(page: str) -> str | None:
    found = re.search(r'href="([^"]+/prendre-rendez-vous/dates\?curseur=[^"]+)"[^>]*>Voir plus de dates', page)
    return html.unescape(found.group(1)) if found else None


def days_of(page: str) -> list[str]:
    return sorted({label.split(", ")[1].split(" à ")[0] for label, _ in slot_links(page)},
                  key=lambda day: int(day.split()[1]) + (100 if "novembre" in day else 0))


def test_a_family_pages_week_by_week_up_to_the_motif_maximum_delay(client, db, clinic):
    first = page_text(search(client, clinic.motif.id))
    assert days_of(first) == ["lundi 19 octobre 2026", "mardi 20 octobre 2026", "mercredi 21 octobre 2026"]
    week = client.get(more_link(first))
    assert week.status_code == 200
    text = page_text(week)
    assert "Semaine du jeudi 22 octobre 2026" in text
    assert days_of(text) == [f"{name} {day} octobre 2026" for name, day in (
        ("jeudi", 22), ("vendredi", 23), ("samedi", 24), ("dimanche", 25), ("lundi", 26), ("mardi", 27),
        ("mercredi", 28))]
    assert "08h00" in text and "11h30" in text
    # 14 days ahead ends on 2 November at 08:00 local, and 1 November is a public holiday: the last week ends on
    # Saturday 31 October, with no further link.
    last = page_text(client.get(more_link(text)))
    assert "Semaine du jeudi 29 octobre 2026" in last and days_of(last)[-1] == "samedi 31 octobre 2026"
    assert more_link(last) is None and "jusqu'au lundi 2 novembre 2026 au plus tard" in last


def test_a_time_from_a_later_week_is_booked_like_any_other(client, db, clinic):
    week = page_text(client.get(more_link(page_text(search(client, clinic.motif.id)))))
    label, link = next((label, link) for label, link in slot_links(week) if "samedi 24 octobre" in label)
    sent = give_details(client, link)
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/974/prendre-rendez-vous/code")


def test_the_week_keeps_the_address_and_comes_back_to_the_lieux(client, db, clinic):
    week = page_text(client.get(more_link(page_text(search(client, clinic.motif.id)))))
    back = html.unescape(re.search(r'href="([^"]+)">Revenir à la liste des lieux', week).group(1))
    assert "commune_code=97411" in back and f"motif={clinic.motif.id}" in back
    assert "Centre PMI Saint-Denis" in page_text(client.get(back))


def test_a_week_without_free_time_says_so_and_still_pages_on(client, db, clinic, factories):
    factories.AbsenceFactory(agent=clinic.agent, first_day=date(2026, 10, 22), last_day=date(2026, 10, 29),
                             start_time=time(0), end_time=time(23, 59))
    first = page_text(search(client, clinic.motif.id))
    assert days_of(first) == ["lundi 19 octobre 2026", "mardi 20 octobre 2026", "mercredi 21 octobre 2026"]
    empty = page_text(client.get(more_link(first)))
    assert "Aucun créneau libre en ligne cette semaine." in empty and slot_links(empty) == []
    assert "vendredi 30 octobre 2026" in days_of(page_text(client.get(more_link(empty))))


def test_only_the_lieux_with_more_days_offer_more(client, db, clinic):
    clinic.motif.online_max_days = 2  # three days at most: the first page holds them all
    db.session.commit()
    page = page_text(search(client, clinic.motif.id))
    assert slot_links(page) and more_link(page) is None


@pytest.mark.parametrize("cursor", ["", "abc", "nimportequoi.abc.def"])
def test_a_forged_cursor_is_told_in_french(client, db, clinic, cursor):
    answer = client.get(f"{START}/dates", query_string={"curseur": cursor})
    assert answer.status_code == 302
    assert "Ce lien vers d'autres dates n'est pas valide" in page_text(client.get(answer.headers["Location"]))


def test_a_tampered_cursor_is_refused(client, db, clinic):
    link = more_link(page_text(search(client, clinic.motif.id)))
    answer = client.get(link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB"), follow_redirects=True)
    assert answer.status_code == 200 and "Ce lien vers d'autres dates n'est pas valide" in page_text(answer)


def test_a_cursor_of_another_territory_or_past_the_delay_or_stale_is_refused(client, db, clinic, factories, app,
                                                                             frozen_time):
    other = make_clinic(factories, territory_number="972")
    with app.test_request_context():
        foreign = online.dates_token(other.territory, other.motif, other.lieu.id, "97209", None, date(2026, 10, 22))
        too_far = online.dates_token(clinic.territory, clinic.motif, clinic.lieu.id, "97411", None, date(2026, 11, 20))
        bad_day = online._serializer().dumps(["dates", clinic.territory.id, clinic.motif.id, clinic.lieu.id, "97411",
                                              "", "2026-13-45"])
        elsewhere = online.dates_token(clinic.territory, clinic.motif, clinic.lieu.id, "97407", None,
                                       date(2026, 10, 22))  # Le Port: a commune this lieu does not serve
    for cursor, message in ((foreign, "Ce lien vers d'autres dates n'est pas valide"),
                            (bad_day, "Ce lien vers d'autres dates n'est pas valide"),
                            (too_far, "se prend en ligne au plus 14 jours à l'avance")):
        answer = client.get(f"{START}/dates", query_string={"curseur": cursor}, follow_redirects=True)
        assert answer.status_code == 200 and message in page_text(answer), message
    clinic.motif.sectorised = True  # and no sector holds Le Port
    db.session.commit()
    answer = client.get(f"{START}/dates", query_string={"curseur": elsewhere}, follow_redirects=True)
    assert "Ce lieu ne propose plus ce motif pour votre adresse" in page_text(answer)
    clinic.motif.sectorised = False
    db.session.commit()
    fresh = more_link(page_text(search(client, clinic.motif.id)))
    frozen_time.shift(86_400 * 2)
    stale = client.get(fresh, follow_redirects=True)
    assert "Ce lien vers d'autres dates n'est pas valide" in page_text(stale)


def test_a_cursor_whose_week_has_come_shows_the_first_days(client, db, clinic, app):
    with app.test_request_context():
        today = online.dates_token(clinic.territory, clinic.motif, clinic.lieu.id, "97411", None, date(2026, 10, 19))
    page = page_text(client.get(f"{START}/dates", query_string={"curseur": today}))
    assert "Premières dates libres" in page
    assert days_of(page) == ["lundi 19 octobre 2026", "mardi 20 octobre 2026", "mercredi 21 octobre 2026"]
    assert "Semaine du jeudi 22 octobre 2026" in page_text(client.get(more_link(page)))


def test_past_the_nearest_lieux_a_search_lists_the_others_with_a_link_to_their_times(client, db, clinic, factories):
    # Five lieux of Saint-Denis serve the address: the four first (nearest, then by name) come with their times,
    # the fifth with « Voir les créneaux », whose page has its times, each bookable.
    for name in ("Centre PMI Bellepierre", "Centre PMI Camélias", "Centre PMI Moufia", "Centre PMI Vauban"):
        lieu = factories.LieuFactory(organisation=clinic.organisation, name=name, phone="+262262901011",
                                     address="1 rue Jean Chatel, 97400 Saint-Denis")
        factories.PlageFactory(agent=clinic.agent, lieu=lieu, first_day=date(2026, 1, 1), motifs=[clinic.motif],
                               start_time=time(13), end_time=time(15), weekdays=0b1111111)
    db.session.commit()
    page = page_text(search(client, clinic.motif.id))
    shown = re.findall(r'<h3 class="fr-h5 fr-mb-1w" id="lieu-\d+">([^<]+)</h3>', page)
    assert shown == ["Centre PMI Bellepierre", "Centre PMI Camélias", "Centre PMI Moufia", "Centre PMI Saint-Denis",
                     "Centre PMI Vauban"]
    with_times = {label.split(", ")[0] for label, _ in slot_links(page)}
    assert with_times == set(shown[:4])
    link = re.search(r'href="([^"]+/dates\?curseur=[^"]+)"[^>]*>Voir les créneaux<span class="fr-sr-only"> à '
                     r'Centre PMI Vauban<', page)
    assert link and page.count('>Voir les créneaux<span class="fr-sr-only">') == 1
    assert "M'inscrire sur la liste d'attente" not in page  # a lieu not read is not a lieu without times
    week = page_text(client.get(html.unescape(link.group(1))))
    times = slot_links(week)
    assert times and {label.split(", ")[0] for label, _ in times} == {"Centre PMI Vauban"}
    sent = give_details(client, times[0][1])
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/974/prendre-rendez-vous/code")
