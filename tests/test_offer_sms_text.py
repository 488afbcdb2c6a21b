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


# --- Exact texts where the offer makes a choice (each guards a rule a mutant once broke unnoticed) ----------------

def offer(**changes) -> str:
    return compose_offer(OfferFacts(**{**SHORT.__dict__, "lieu_address": None, **changes}))


WHEN = "jeu. 04/03 à 10h"
TAIL = f"Acceptez avant 9h30 : {LINK}"


@pytest.mark.parametrize(("changes", "expected"), [
    (dict(organisation=" "), f"Créneau libéré pour Léa, {WHEN} (Pesée), Centre PMI Belleville. {TAIL}"),
    (dict(organisation="– PMI Paris XX :"), f"PMI Paris XX : créneau libéré pour Léa, {WHEN} (Pesée), Centre PMI Belleville. {TAIL}"),
    (dict(organisation="Protection maternelle et infantile de Seine-Saint-Denis"),
     f"PMI de Seine-Saint-Denis : créneau libéré pour Léa, {WHEN} (Pesée), Centre PMI Belleville. {TAIL}"),
    (dict(organisation="PMI-Seine-Saint-Denis-Bobigny Centre-Nord"),
     f"PMI-Seine-Saint-Denis-Bobigny : créneau libéré pour Léa, {WHEN} (Pesée), Centre PMI Belleville. {TAIL}"),
    (dict(organisation="PMI boulevard de la Villette 19e"),  # 32 septets: kept as written, not abbreviated
     f"PMI boulevard de la Villette 19e : créneau libéré pour Léa, {WHEN} (Pesée), Centre PMI Belleville. {TAIL}"),
    (dict(person="Marie Claire"), f"PMI Belleville : créneau libéré pour Marie, {WHEN} (Pesée), Centre PMI Belleville. {TAIL}"),
    (dict(person="Anne-Charlotte-Marie"),  # 20 septets, the longest first name shown
     f"PMI Belleville : créneau libéré pour Anne-Charlotte-Marie, {WHEN} (Pesée), Centre PMI Belleville. {TAIL}"),
    (dict(person="Anne-Charlotte-Maries"), f"PMI Belleville : créneau libéré pour vous, {WHEN} (Pesée), Centre PMI Belleville. {TAIL}"),
    (dict(motif=None), f"PMI Belleville : créneau libéré pour Léa, {WHEN}, Centre PMI Belleville. {TAIL}"),
    (dict(lieu_name=None), f"PMI Belleville : créneau libéré pour Léa, {WHEN} (Pesée). {TAIL}"),
    (dict(location_type="home"), f"PMI Belleville : créneau libéré pour Léa, {WHEN} (Pesée), visite à domicile. {TAIL}"),
    (dict(lieu_name="PMI Belleville", lieu_address="3 rue Hoche"),  # 160 septets with the address: one segment
     f"PMI Belleville : créneau libéré pour Léa, {WHEN} (Pesée), PMI Belleville, 3 rue Hoche. {TAIL}"),
    (dict(lieu_address="12 rue Ramponeau, 75020 Paris", motif="Consultation de puériculture et bilan de santé"),
     f"PMI Belleville : créneau libéré pour Léa, {WHEN} (Consultation de puériculture et bilan de santé), "
     f"Centre PMI Belleville, 12 rue Ramponeau, 75020 Paris. {TAIL}"),
])
def test_each_offer_reads_exactly_as_the_family_gets_it(changes, expected):
    text = offer(**changes)
    assert text == expected
    assert segments(text) == (1 if septets(text) <= 160 else 2)


def test_a_link_of_the_longest_allowed_length_is_accepted():
    link = "https://rdv.example.fr/o/" + "x" * 35
    assert septets(link) == MAX_LINK_SEPTETS and offer(link=link).endswith(link)


# Names too long for two segments: the motif, then the lieu, are cut at a word (60 septets at most each).
MOTIF = ("Consultation de puériculture et bilan de santé des quatre ans en école maternelle avec la vaccination du "
         "calendrier et le suivi du carnet de santé de l'enfant")
LIEU = ("Centre de protection maternelle et infantile de Saint-Pierre Ravine des Cabris, annexe de la Ligne Paradis, "
        "derrière la mairie annexe du quartier Bois d'Olive, entrée par le parking de la médiathèque")
SENDER = "PMI Saint-Pierre Ravine Cabris : créneau libéré pour"
CUT_MOTIF = "(Consultation de puériculture et bilan de santé des quatre)"
CUT_LIEU = "Centre de PMI de Saint-Pierre Ravine des Cabris, annexe"


@pytest.mark.parametrize(("changes", "expected"), [
    (dict(motif=MOTIF, lieu_name="Centre PMI de Saint-Pierre"),
     f"{SENDER} Marie-Emmanuelle, {WHEN} {CUT_MOTIF}, Centre PMI de Saint-Pierre. {TAIL}"),
    (dict(motif=MOTIF, lieu_name=LIEU), f"{SENDER} Marie-Emmanuelle, {WHEN} {CUT_MOTIF}, {CUT_LIEU}. {TAIL}"),
    (dict(motif=None, lieu_name=LIEU), f"{SENDER} Marie-Emmanuelle, {WHEN}, {CUT_LIEU}. {TAIL}"),
    (dict(motif=MOTIF, lieu_name=None), f"{SENDER} Marie-Emmanuelle, {WHEN} {CUT_MOTIF}. {TAIL}"),
    (dict(motif="Bilan-de-santé-en-école-maternelle-des-enfants-de-quatre-ans et vaccins", lieu_name=LIEU),
     f"{SENDER} Marie-Emmanuelle, {WHEN} (Bilan-de-santé-en-école-maternelle-des-enfants-de-quatre-ans), "
     f"{CUT_LIEU}. {TAIL}"),  # a motif cut to its one long first word keeps it
    (dict(motif=MOTIF, lieu_name="Centre-de-protection-maternelle-et-infantile-de-Saint-Pierre Ravine des Cabris, "
                                 "annexe de la Ligne Paradis, derrière la mairie annexe du quartier Bois d'Olive"),
     f"{SENDER} Marie-Emmanuelle, {WHEN} {CUT_MOTIF}, Centre-de-protection-maternelle-et-infantile-de-Saint-Pierre. "
     f"{TAIL}"),  # and so does a lieu
    (dict(person="Maëlys", motif=MOTIF, lieu_name=LIEU[:LIEU.index(" du quartier")]),  # 306 septets: lieu kept whole
     f"{SENDER} Maelys, {WHEN} {CUT_MOTIF}, Centre de PMI de Saint-Pierre Ravine des Cabris, annexe de la Ligne "
     f"Paradis, derrière la mairie annexe. {TAIL}"),
])
def test_names_too_long_for_two_segments_are_cut_at_a_word_motif_first(changes, expected):
    text = offer(**{"organisation": "PMI Saint-Pierre Ravine Cabris", "person": "Marie-Emmanuelle", **changes})
    assert text == expected and segments(text) == 2


def test_a_deadline_on_the_hour_is_written_as_every_other_time():
    # « 11h », as the rdv's own time is written, never « 11h00 ».
    text = compose_offer(OfferFacts(**{**SHORT.__dict__, "lieu_address": None,
                                       "held_until_local": datetime(2027, 3, 3, 11, 0, tzinfo=PARIS)}))
    assert text.endswith(f"Acceptez avant 11h : {LINK}")
