"""The SMS offering a freed slot to a waiting family says who sends it, for which child, what, where, when and until
when — one segment when it can, two at most, counted on long real names (issue 19.11)."""
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapins.notifications.gsm import segments, septets
from lapins.notifications.sms_text import MAX_LINK_SEPTETS, OfferFacts, compose_offer

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
LINK = "https://rdv.example.fr/o/12345-AbC12x9Kf0"  # as long as the offer links of a large territory

SHORT = OfferFacts(
    starts_at_local=datetime(2027, 3, 4, 10, 0, tzinfo=PARIS),
    held_until_local=datetime(2027, 3, 3, 9, 30, tzinfo=PARIS),
    link=LINK, organisation="PMI Belleville", motif="Pesée", person="Léa", lieu_name="Centre PMI Belleville",
    lieu_address="12 rue Ramponeau, 75020 Paris")

# Real names as départements write them: the longest sender label allowed, a long child's first name, a long motif
# and a lieu with its full address.
LONG = OfferFacts(
    starts_at_local=datetime(2027, 12, 22, 14, 45, tzinfo=REUNION),
    held_until_local=datetime(2027, 12, 22, 12, 15, tzinfo=REUNION),
    link="https://rendez-vous.departement974.re/o/" + "9" * 9 + "-AbC12x9K",
    organisation="PMI Saint-Pierre Ravine Cabris", motif="Consultation de puériculture et bilan de santé à 4 ans",
    person="Marie-Emmanuelle", lieu_name="Centre de PMI de Saint-Pierre Ravine des Cabris",
    lieu_address="12 chemin de la Ravine des Cabris\n97410 Saint-Pierre")


def test_a_short_offer_says_everything_in_one_segment():
    text = compose_offer(OfferFacts(**{**SHORT.__dict__, "lieu_address": None}))
    assert text == ("PMI Belleville : créneau libéré pour Léa, jeu. 04/03 à 10h (Pesée), Centre PMI Belleville. "
                    f"Acceptez avant 9h30 : {LINK}")
    assert segments(text) == 1


def test_the_address_goes_first_to_keep_one_segment():
    facts = OfferFacts(**{**SHORT.__dict__, "lieu_address": "12 rue Ramponeau, 75020 Paris"})
    text = compose_offer(facts)
    assert segments(text) == 1 and "Ramponeau" not in text
    assert all(part in text for part in ("PMI Belleville :", "pour Léa", "jeu. 04/03 à 10h", "(Pesée)",
                                         "Centre PMI Belleville", "avant 9h30", LINK))


def test_long_real_names_take_two_segments_and_keep_every_fact():
    text = compose_offer(LONG)
    assert septets(LONG.link) <= MAX_LINK_SEPTETS
    assert segments(text) == 2, (septets(text), text)
    for part in ("PMI Saint-Pierre Ravine Cabris :", "pour Marie-Emmanuelle", "mer. 22/12 à 14h45",
                 "(Consultation de puériculture et bilan de santé à 4 ans)",
                 "Centre de PMI de Saint-Pierre Ravine des Cabris", "avant 12h15", LONG.link):
        assert part in text, part


def test_an_adult_waiting_for_themselves_is_told_pour_vous_and_a_phone_rdv_says_so():
    facts = OfferFacts(**{**SHORT.__dict__, "person": None, "location_type": "phone", "lieu_name": None,
                          "lieu_address": None})
    text = compose_offer(facts)
    assert "créneau libéré pour vous, jeu. 04/03 à 10h (Pesée), RDV téléphonique." in text
    assert segments(text) == 1


names = st.text(alphabet=st.characters(categories=("L", "Zs"), max_codepoint=0x17F) | st.sampled_from("-' "),
                min_size=1, max_size=120)


@settings(max_examples=150, deadline=None)
@given(organisation=names, motif=names, person=names, lieu=names, address=names)
def test_whatever_the_names_an_offer_is_two_segments_at_most_with_sender_time_hold_and_link(
        organisation, motif, person, lieu, address):
    facts = OfferFacts(**{**LONG.__dict__, "organisation": organisation[:40], "motif": motif, "person": person,
                          "lieu_name": lieu, "lieu_address": address})
    text = compose_offer(facts)
    assert segments(text) <= 2
    assert "mer. 22/12 à 14h45" in text and "avant 12h15" in text and text.endswith(LONG.link)


def test_a_link_too_long_for_an_sms_is_refused():
    with pytest.raises(ValueError):
        compose_offer(OfferFacts(**{**SHORT.__dict__, "link": "https://x.fr/" + "a" * MAX_LINK_SEPTETS}))
