"""The SMS a family receives: one segment whatever the data, in plain French, with the local time and its link."""
import string
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapins.notifications.gsm import is_gsm7, septets
from lapins.notifications.sms_text import (
    KINDS,
    LOCATION_TYPES,
    MAX_LINK_SEPTETS,
    SmsFacts,
    WordingError,
    checked_label,
    checked_note,
    compose,
    compose_receipt,
    cost_kept,
    display_phone,
    format_when,
    note_kept,
    segments_of,
)

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")
GUADELOUPE = ZoneInfo("America/Guadeloupe")
LINK = "https://rdv.example.fr/r/1f3a-AbC12x9Kf0"

SHORT = SmsFacts(
    kind="reminder",
    starts_at_local=datetime(2026, 11, 24, 9, 30, tzinfo=PARIS),
    motif="Vaccins",
    location_type="on_site",
    link=LINK,
    organisation="PMI 92",
    lieu_name="PMI Nanterre",
    lieu_address="3 rue Hoche",
    phone="01 41 37 10 00",
    person="Léa",
)

HAUTS_DE_SEINE = SmsFacts(
    kind="reminder",
    starts_at_local=datetime(2026, 11, 24, 14, 5, tzinfo=PARIS),
    motif="Consultation de puériculture et pesée du nourrisson",
    location_type="on_site",
    link=LINK,
    organisation="PMI Hauts-de-Seine",
    lieu_name="Centre de protection maternelle et infantile Jean-Baptiste Clément",
    lieu_address="12 avenue du Général de Gaulle, 92000 Nanterre",
    phone="01 41 37 10 00",
    person="Léa",
)

REUNION_FACTS = SmsFacts(
    kind="reminder",
    starts_at_local=datetime(2026, 12, 31, 23, 55, tzinfo=REUNION),
    motif="Bilan de santé de l'enfant de 4 ans en école maternelle",
    location_type="on_site",
    link="https://rdv.example.fr/r/3e8-Zz_-9aQ0pW",
    organisation="PMI de La Réunion – Département",
    region="RE",
    lieu_name="Centre de PMI de Saint-Pierre Ravine des Cabris",
    lieu_address="12 chemin de la Ravine des Cabris\n97410 Saint-Pierre",
    phone="+262 692 12 34 56",
    person="Maïwenn-Océane",
)

GUADELOUPE_FACTS = SmsFacts(
    kind="reminder",
    starts_at_local=datetime(2027, 1, 1, 0, 5, tzinfo=GUADELOUPE),
    motif="Vaccination (DTCaP, ROR) et suivi du carnet de santé",
    location_type="on_site",
    link="https://rdv.example.fr/r/ffff-Q1w2E3r4T5",
    organisation="PMI de la Guadeloupe",
    region="GP",
    lieu_name="Maison départementale des solidarités de Pointe-à-Pitre",
    lieu_address="Immeuble Les Flamboyants, boulevard Légitimus, 97110 Pointe-à-Pitre",
    phone="+590690123456",
    person="Françoise-Noëlle Éléonore",
)

SEINE_SAINT_DENIS = SmsFacts(
    kind="reminder",
    starts_at_local=datetime(2026, 3, 28, 23, 59, tzinfo=PARIS),
    motif="Consultation de puériculture et pesée du nourrisson – entretien prénatal précoce",
    location_type="on_site",
    link="https://rdv.example.fr/r/2a7c9-xY_z-0AbCdE",
    organisation="Conseil départemental de la Seine-Saint-Denis – Service de protection maternelle et infantile",
    lieu_name="Centre de protection maternelle et infantile « Les Cœurs Vaillants » Jean-Baptiste Clément",
    lieu_address="Résidence Les Cœurs Vaillants, bâtiment C, 147 avenue du Président Salvador Allende, 93000 Bobigny",
    phone="01 43 93 93 93",
    person="Anaïs-Bénédicte Gwenaëlle",
)

FIXTURES = [SHORT, HAUTS_DE_SEINE, REUNION_FACTS, GUADELOUPE_FACTS, SEINE_SAINT_DENIS]


def assert_one_gsm7_segment_with_link(text: str, facts: SmsFacts) -> None:
    assert is_gsm7(text), text
    assert septets(text) <= 160, text
    assert segments_of(text) == 1
    assert "…" not in text
    if facts.kind != "cancelled" or not display_phone(facts.phone, facts.region):
        assert facts.link in text.split(), text  # a whole word: nothing glued to it, nothing cut


@pytest.mark.parametrize("facts", FIXTURES, ids=["short", "hauts-de-seine", "reunion", "guadeloupe", "saint-denis"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("location_type", LOCATION_TYPES)
@pytest.mark.parametrize("two_way", [False, True])
def test_every_message_is_one_gsm7_sms_showing_the_local_time(facts, kind, location_type, two_way):
    facts = replace(facts, kind=kind, location_type=location_type, two_way=two_way)
    text = compose(facts)
    assert_one_gsm7_segment_with_link(text, facts)
    assert format_when(facts.starts_at_local) in text
    if kind == "reminder" and two_way:
        assert "OUI" in text and "ANNULER" in text
    else:
        assert "OUI" not in text


@pytest.mark.parametrize(("starts_at", "shown"), [
    (datetime(2026, 11, 24, 9, 30, tzinfo=PARIS), "mar. 24/11 à 9h30"),
    (datetime(2026, 11, 23, 14, 0, tzinfo=PARIS), "lun. 23/11 à 14h"),
    (datetime(2026, 11, 25, 14, 5, tzinfo=PARIS), "mer. 25/11 à 14h05"),
    (datetime(2026, 3, 5, 8, 0, tzinfo=PARIS), "jeu. 05/03 à 8h"),
    (datetime(2026, 12, 31, 23, 55, tzinfo=REUNION), "jeu. 31/12 à 23h55"),
    (datetime(2027, 1, 1, 0, 5, tzinfo=GUADELOUPE), "ven. 01/01 à 0h05"),
    (datetime(2026, 11, 28, 10, 15, tzinfo=PARIS), "sam. 28/11 à 10h15"),
    (datetime(2026, 11, 29, 12, 0, tzinfo=PARIS), "dim. 29/11 à 12h"),
])
def test_dates_are_short_french_with_24_hour_times(starts_at, shown):
    assert format_when(starts_at) == shown


def test_the_family_reads_the_territory_time_not_utc():
    # 20:30 UTC on Sunday 1 March is 00:30 on Monday 2 March in Réunion.
    instant = datetime(2026, 3, 1, 20, 30, tzinfo=UTC)
    text = compose(replace(SHORT, starts_at_local=instant.astimezone(REUNION), region="RE"))
    assert "lun. 02/03 à 0h30" in text
    assert "20h30" not in text and "01/03" not in text


def test_one_instant_reads_in_each_territory_s_own_time_one_after_the_other():
    # One worker sends Paris' and Réunion's reminders in turn: a time written for one zone is never reused for the
    # other (the same instant in two zones compares equal).
    instant = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    assert "lun. 02/03 à 9h30" in compose(replace(SHORT, starts_at_local=instant.astimezone(PARIS)))
    assert "lun. 02/03 à 12h30" in compose(replace(SHORT, starts_at_local=instant.astimezone(REUNION), region="RE"))
    assert format_when(instant.astimezone(PARIS)) == "lun. 02/03 à 9h30"


def test_a_short_reminder_says_everything():
    assert compose(SHORT) == (
        "PMI 92 : rappel, RDV de Léa mar. 24/11 à 9h30 (Vaccins), PMI Nanterre, 3 rue Hoche. "
        "Tél 01 41 37 10 00. Infos/annuler : https://rdv.example.fr/r/1f3a-AbC12x9Kf0"
    )


@pytest.mark.parametrize(("kind", "expected"), [
    ("created", ("PMI 92 : RDV confirmé le mar. 24/11 à 9h30 (Vaccins), PMI Nanterre, 3 rue Hoche. "
                 "Tél 01 41 37 10 00. Infos/annuler : https://rdv.example.fr/r/1f3a-AbC12x9Kf0")),
    ("changed", ("PMI 92 : votre RDV est déplacé au mar. 24/11 à 9h30, PMI Nanterre, 3 rue Hoche. "
                 "Tél 01 41 37 10 00. Infos/annuler : https://rdv.example.fr/r/1f3a-AbC12x9Kf0")),
    ("cancelled", ("PMI 92 : votre RDV du mar. 24/11 à 9h30 (Vaccins) est annulé. "
                   "Pour un nouveau RDV : Tél 01 41 37 10 00. Infos : https://rdv.example.fr/r/1f3a-AbC12x9Kf0")),
])
def test_each_event_has_its_own_sentence(kind, expected):
    assert compose(replace(SHORT, kind=kind, person=None)) == expected


def test_with_a_first_name_the_rdv_is_the_childs():
    assert compose(replace(SHORT, kind="changed", location_type="home")) == (
        "PMI 92 : la visite à domicile de Léa est déplacée au mar. 24/11 à 9h30 (Vaccins). "
        "Tél 01 41 37 10 00. Infos/annuler : https://rdv.example.fr/r/1f3a-AbC12x9Kf0"
    )


def test_de_elides_before_a_vowel():
    assert "RDV d'Emma mar." in compose(replace(SHORT, person="Emma"))
    assert "RDV de Hugo mar." in compose(replace(SHORT, person="Hugo", phone=None))


def test_a_home_visit_is_feminine_and_has_no_lieu():
    for kind, word in [("created", "confirmée"), ("changed", "déplacée"), ("cancelled", "annulée")]:
        text = compose(replace(SHORT, kind=kind, location_type="home"))
        assert "visite à domicile" in text and word in text
        assert "PMI Nanterre" not in text


def test_a_phone_rdv_says_we_will_call():
    text = compose(replace(SHORT, location_type="phone", phone=None))
    assert text == (
        "PMI 92 : rappel, RDV téléphonique de Léa mar. 24/11 à 9h30 (Vaccins), nous vous appelons. "
        "Infos/annuler : https://rdv.example.fr/r/1f3a-AbC12x9Kf0"
    )


def test_two_way_reminder_asks_for_a_reply():
    assert compose(replace(SHORT, two_way=True, person=None, lieu_address=None, phone=None)) == (
        "PMI 92 : rappel, RDV mar. 24/11 à 9h30, PMI Nanterre. "
        "Répondez OUI pour confirmer, ANNULER pour annuler. Infos : https://rdv.example.fr/r/1f3a-AbC12x9Kf0"
    )
    # When room runs out, the instructions keep their keywords in a shorter form.
    assert "Répondez OUI ou ANNULER. Infos : https://" in compose(replace(HAUTS_DE_SEINE, two_way=True))


def test_two_way_is_only_for_reminders():
    assert "OUI" not in compose(replace(SHORT, kind="created", two_way=True))


@pytest.mark.parametrize(("stored", "region", "shown"), [
    ("01 41 37 10 00", "FR", "01 41 37 10 00"),
    ("+33141371000", "FR", "01 41 37 10 00"),
    ("+262 692 12 34 56", "RE", "0692 12 34 56"),
    ("0262 40 00 00", "RE", "0262 40 00 00"),
    ("+590690123456", "GP", "0690 12 34 56"),
    ("+262262400000", "FR", "0262 40 00 00"),  # an overseas number is dialled the same from Paris
    ("+32 2 555 12 34", "FR", "+32 2 555 12 34"),
    ("3919", "FR", "3919"),
    ("voir le site", "FR", None),
    (None, "FR", None),
])
def test_phones_are_shown_as_a_french_reader_dials_them(stored, region, shown):
    assert display_phone(stored, region) == shown


def test_overseas_phone_reaches_the_text_in_national_format():
    text = compose(replace(SHORT, phone="+262692123456", region="RE"))
    assert "Tél 0692 12 34 56." in text


def test_when_room_runs_out_the_place_is_kept_before_the_details():
    text = compose(replace(HAUTS_DE_SEINE, kind="created"))
    assert text == (
        "PMI Hauts-de-Seine : RDV de Léa confirmé le mar. 24/11 à 14h05, Centre de PMI Jean-Baptiste Clément. "
        "Infos/annuler : https://rdv.example.fr/r/1f3a-AbC12x9Kf0"
    )


def test_cut_texts_end_on_a_whole_word_without_ellipsis():
    text = compose(replace(HAUTS_DE_SEINE, two_way=True))
    assert ", Centre de PMI Jean-Baptiste. " in text
    text = compose(replace(HAUTS_DE_SEINE, kind="cancelled", location_type="home"))
    assert "(Consultation de puériculture) est annulée." in text  # not "... et pesée du"


def test_a_cancellation_keeps_the_phone_to_book_again():
    for facts in FIXTURES:
        for location_type in LOCATION_TYPES:
            text = compose(replace(facts, kind="cancelled", location_type=location_type))
            assert f"Pour un nouveau RDV : Tél {display_phone(facts.phone, facts.region)}." in text


def test_a_cancellation_without_phone_keeps_the_link():
    text = compose(replace(SEINE_SAINT_DENIS, kind="cancelled", location_type="home", phone=None))
    assert_one_gsm7_segment_with_link(text, replace(SEINE_SAINT_DENIS, kind="cancelled", phone=None))


def test_accents_outside_gsm7_are_transliterated():
    facts = replace(
        SHORT, person="Françoise", motif="Suivi de grossesse – 2ᵉ trimestre", lieu_name="PMI Œuvre", lieu_address=None
    )
    assert compose(replace(facts, phone=None)) == (
        "PMI 92 : rappel, RDV de Francoise mar. 24/11 à 9h30 (Suivi de grossesse - 2e trimestre), PMI OEuvre. "
        "Infos/annuler : https://rdv.example.fr/r/1f3a-AbC12x9Kf0"
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("location_type", LOCATION_TYPES)
@pytest.mark.parametrize("two_way", [False, True])
def test_the_longest_allowed_link_always_fits(kind, location_type, two_way):
    huge = "Anticonstitutionnellement " * 12
    facts = SmsFacts(
        kind=kind,
        starts_at_local=datetime(2026, 11, 25, 14, 5, tzinfo=PARIS),  # "mer. 25/11 à 14h05", the longest date
        motif=huge,
        location_type=location_type,
        link="https://rdv.example.fr/r/" + "x" * (MAX_LINK_SEPTETS - 27) + "~",
        organisation=huge,
        lieu_name=huge,
        lieu_address=huge,
        phone="+33 (0)1 41 37 10 00",
        person=huge,
        two_way=two_way,
    )
    assert septets(facts.link) == MAX_LINK_SEPTETS
    assert_one_gsm7_segment_with_link(compose(facts), facts)


@pytest.mark.parametrize("changes", [
    {"kind": "moved"},
    {"location_type": "visio"},
    {"starts_at_local": datetime(2026, 11, 24, 9, 30)},
    {"link": "https://rdv.example.fr/r/a b"},
    {"link": "https://rdv.example.fr/r/ç"},
    {"link": "https://rdv.example.fr/r/" + "x" * MAX_LINK_SEPTETS},
    {"link": ""},
])
def test_facts_that_could_not_make_a_proper_sms_are_refused(changes):
    with pytest.raises(ValueError):
        replace(SHORT, **changes)


french_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs", "S"))
    | st.sampled_from("éèêëàâçîïôœùûüÿÉÈÊÀÇÎÔŒ’«»–… \u00a0"),
    max_size=120,
)
links = st.builds(
    lambda token: f"https://rdv.example.fr/r/{token}",
    st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=8, max_size=MAX_LINK_SEPTETS - 25),
)
facts_strategy = st.builds(
    SmsFacts,
    kind=st.sampled_from(KINDS),
    starts_at_local=st.datetimes(
        min_value=datetime(2025, 1, 1),
        max_value=datetime(2035, 1, 1),
        timezones=st.sampled_from([PARIS, REUNION, GUADELOUPE]),
    ),
    motif=french_text,
    location_type=st.sampled_from(LOCATION_TYPES),
    link=links,
    organisation=french_text,
    region=st.sampled_from(["FR", "RE", "GP", "MQ", "GF", "YT"]),
    lieu_name=st.none() | french_text,
    lieu_address=st.none() | french_text,
    phone=st.none() | st.sampled_from(["01 41 37 10 00", "+262692123456", "+590 690 12 34 56", "0596 12 34 56", "3919"])
    | st.text(alphabet="0123456789 +.-()", max_size=25),
    person=st.none() | french_text,
    two_way=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(facts_strategy)
def test_any_facts_make_one_gsm7_sms_with_the_link_intact(facts):
    text = compose(facts)
    assert_one_gsm7_segment_with_link(text, facts)
    assert format_when(facts.starts_at_local) in text


# --- A territory's own sentence (Territory.sms_note_<kind>) --------------------------------------------------------

def test_a_territorys_sentence_goes_before_the_link_when_there_is_room():
    text = compose(replace(SHORT, kind="created", phone=None, note="Carnet de santé SVP."))
    assert "Carnet de santé SVP. Infos/annuler : " + LINK in text and septets(text) <= 160


def test_a_territorys_sentence_costs_the_optional_facts_first_and_never_the_segment():
    without = compose(HAUTS_DE_SEINE)
    with_note = compose(replace(HAUTS_DE_SEINE, note="Pensez au carnet de santé."))
    assert "Pensez au carnet de santé." in with_note and "Pensez" not in without
    assert septets(with_note) <= 160 and with_note.endswith(LINK)


def test_a_sentence_that_cannot_fit_is_dropped_whole_and_the_facts_stay():
    facts = replace(REUNION_FACTS, location_type="phone", two_way=True, note="x" * 59 + ".")
    text = compose(facts)
    assert "xxx" not in text and "nous vous appelons" in text and septets(text) <= 160
    assert not note_kept(facts) and note_kept(replace(facts, note=None))


@pytest.mark.parametrize("typed, stored", [
    ("  pensez au carnet  ", "pensez au carnet."),
    ("Vœux à tous !", "Voeux à tous !"),
    ("", None),
])
def test_a_sentence_is_stored_transliterated_and_ending_with_a_stop(typed, stored):
    assert checked_note(typed) == stored


@pytest.mark.parametrize("typed, message", [
    ("Bonne journée 🙂", "alphabet des SMS"),
    ("Voir https://pmi.fr", "adresse web"),
    ("x" * 61, "trop longue"),
])
def test_a_sentence_outside_gsm7_or_too_long_is_refused_in_french(typed, message):
    with pytest.raises(WordingError, match=message):
        checked_note(typed)


def test_a_sender_label_stands_for_the_organisation_and_is_checked():
    assert checked_label(" PMI du Nord ") == "PMI du Nord"
    with pytest.raises(WordingError, match="32 au plus"):
        checked_label("Protection maternelle et infantile du Nord")
    with pytest.raises(WordingError, match="une lettre"):
        checked_label("59")


# --- Exact texts where the composition makes a choice (each guards a rule a mutant once broke unnoticed) ---------

def link_of(length: int) -> str:
    return "https://rdv.example.fr/r/" + "x" * length


def facts_of(**changes) -> SmsFacts:
    values = dict(kind="created", starts_at_local=datetime(2026, 11, 24, 9, 30, tzinfo=PARIS), motif="Pesée",
                  location_type="on_site", link=link_of(20), organisation="PMI 92")
    return SmsFacts(**{**values, **changes})


def test_without_a_sender_the_text_opens_with_a_capital_and_nothing_else():
    assert compose(replace(SHORT, organisation=" ", phone=None)) == (
        "Rappel, RDV de Léa mar. 24/11 à 9h30 (Vaccins), PMI Nanterre, 3 rue Hoche. Infos/annuler : " + LINK
    )


def test_stored_values_are_tidied_without_losing_letters():
    # Punctuation around the sender goes, "XX" (an arrondissement) stays; runs of spaces and line breaks of a lieu
    # and its address become single spaces and commas (the motif goes to make room for the whole address).
    text = compose(replace(SHORT, organisation="– PMI Paris XX :", person=None, phone=None,
                           lieu_name="Centre  PMI   Paris XX", lieu_address="3 rue Hoche\n92000 Nanterre\n"))
    assert text == ("PMI Paris XX : rappel, RDV mar. 24/11 à 9h30, Centre PMI Paris XX, 3 rue Hoche, "
                    "92000 Nanterre. Infos/annuler : " + LINK)
    assert compose(replace(SHORT, person=None, phone=None, lieu_name="PMI Nanterre,", lieu_address="3 rue Hoche;")) == (
        "PMI 92 : rappel, RDV mar. 24/11 à 9h30 (Vaccins), PMI Nanterre, 3 rue Hoche. Infos/annuler : " + LINK
    )


def test_de_elides_before_any_vowel_in_either_case_and_not_before_x():
    assert "RDV d'élise mar." in compose(replace(SHORT, person="élise", phone=None))
    assert "RDV de Xavier mar." in compose(replace(SHORT, person="Xavier", phone=None))


def test_an_on_site_rdv_without_lieu_or_address_ends_its_sentence_cleanly():
    assert compose(replace(SHORT, lieu_name=None, lieu_address=None, phone=None)) == (
        "PMI 92 : rappel, RDV de Léa mar. 24/11 à 9h30 (Vaccins). Infos/annuler : " + LINK
    )


def test_a_sentence_ending_with_a_question_mark_gets_no_extra_stop():
    text = compose(replace(SHORT, kind="created", phone=None, note="Une question ?"))
    assert "3 rue Hoche. Une question ? Infos/annuler : " in text


def test_a_phone_stored_without_spaces_is_shown_as_dialled_in_the_territorys_region():
    assert "Tél 0692 12 34 56." in compose(replace(SHORT, phone="0692123456", region="RE"))
    assert display_phone("0141371000", "FR") == "01 41 37 10 00"
    assert display_phone("0692123456", "RE") == "0692 12 34 56"


def test_a_kept_as_stored_number_may_have_twenty_characters_not_more():
    assert display_phone("12 34 56 78 90 12 34", "FR") == "12 34 56 78 90 12 34"
    assert display_phone("12 34 56 78 90 12 345", "FR") is None


# Each case: the facts, then the exact text; together they fix every shortening step and what is given back.
SHORTENINGS = {
    "a first name is reduced to its first word": (
        facts_of(location_type="home", organisation="PMI Hauts-de-Seine", motif="", person="Jean Pierre Paul",
                 link=link_of(30)),
        "PMI Hauts-de-Seine : visite à domicile de Jean confirmée le mar. 24/11 à 9h30. Infos/annuler : "
        + link_of(30)),
    "an address loses its city": (
        facts_of(kind="reminder", motif="", lieu_name="PMI Nanterre", lieu_address="12 rue Victor Hugo, 92000 Nanterre",
                 phone="01 41 37 10 00", link=link_of(35)),
        "PMI 92 : rappel, RDV mar. 24/11 à 9h30, PMI Nanterre, 12 rue Victor Hugo. Infos/annuler : " + link_of(35)),
    "an address loses its last part only": (
        facts_of(kind="reminder", motif="", lieu_name="PMI Nanterre",
                 lieu_address="Bâtiment C, 12 rue Victor Hugo, 92000 Nanterre", phone="01 41 37 10 00", link=link_of(30)),
        "PMI 92 : rappel, RDV mar. 24/11 à 9h30, PMI Nanterre, Batiment C, 12 rue Victor Hugo. Infos/annuler : "
        + link_of(30)),
    "an address loses its parts from the end, one at a time": (
        facts_of(kind="reminder", two_way=True, motif="", organisation="PMI Paris XX", lieu_name="PMI Nanterre",
                 lieu_address="Résidence Les Lilas, bâtiment C, 147 boulevard Salvador Allende, 93000 Bobigny",
                 phone="+262692123456", link=link_of(12)),
        "PMI Paris XX : rappel, RDV mar. 24/11 à 9h30, PMI Nanterre, Résidence Les Lilas. Répondez OUI ou ANNULER. "
        "Infos : " + link_of(12)),
    "a cut motif never ends on two small words": (
        facts_of(kind="cancelled", location_type="home", organisation="PMI Paris XX",
                 motif="Suivi de grossesse et préparation à la naissance", phone="01 41 37 10 00"),
        "PMI Paris XX : votre visite à domicile du mar. 24/11 à 9h30 (Suivi de grossesse et préparation) est annulée. "
        "Pour un nouveau RDV : Tél 01 41 37 10 00."),
    "a motif cut to two words is kept": (
        facts_of(kind="cancelled", location_type="home", organisation="PMI Nord Est Ouest Sud Centre",
                 motif="Pesée mensuelle du nourrisson", phone="01 41 37 10 00"),
        "PMI Nord Est Ouest Sud Centre : votre visite à domicile du mar. 24/11 à 9h30 (Pesée mensuelle) est annulée. "
        "Pour un nouveau RDV : Tél 01 41 37 10 00."),
    "a motif cut to two words is kept, before the first name": (
        facts_of(location_type="phone", organisation="PMI Paris XX", motif="Pesée mensuelle du nourrisson",
                 person="Marie-Emmanuelle", link=link_of(12)),
        "PMI Paris XX : RDV téléphonique confirmé le mar. 24/11 à 9h30 (Pesée mensuelle), nous vous appelons. "
        "Infos/annuler : " + link_of(12)),
    "a lieu cut to two words is kept, its address goes": (
        facts_of(kind="reminder", two_way=True, motif="", organisation="Conseil départemental du Val-de-Marne PMI",
                 lieu_name="Maison départementale des solidarités de Pointe-à-Pitre",
                 lieu_address="12 rue Victor Hugo 92000 Nanterre", link=link_of(10)),
        "Conseil départemental : rappel, RDV mar. 24/11 à 9h30, Maison départementale. Répondez OUI ou ANNULER. "
        "Infos : " + link_of(10)),
    "a lieu is cut after a word ending with a comma, the comma goes": (
        facts_of(kind="changed", motif="", organisation="PMI Nord Est Ouest Sud Centre",
                 lieu_name="Centre PMI, Nanterre Parc", lieu_address="3 rue Hoche", link=link_of(25)),
        "PMI Nord Est Ouest Sud Centre : votre RDV est déplacé au mar. 24/11 à 9h30, Centre PMI. Infos/annuler : "
        + link_of(25)),
    "a lieu cut at a word may end with XX and fill the segment exactly": (
        facts_of(motif="Pesée mensuelle du nourrisson", organisation="PMI Paris XX Porte de Bagnolet",
                 lieu_name="Centre PMI Paris XX Porte de Bagnolet Gambetta",
                 lieu_address="12 chemin de la Ravine\n97410 Saint-Pierre", link=link_of(30)),
        "PMI Paris XX Porte de Bagnolet : RDV confirmé le mar. 24/11 à 9h30, Centre PMI Paris XX. Infos/annuler : "
        + link_of(30)),
    "a sender over 32 septets is cut at a word first": (
        facts_of(kind="cancelled", organisation="Maison des solidarités de Nanterre Centre", person="Léa",
                 phone="+262692123456"),
        "Maison des solidarités : le RDV de Léa du mar. 24/11 à 9h30 (Pesée) est annulé. Pour un nouveau RDV : "
        "Tél 0692 12 34 56."),
    "a sender may be cut to one long word": (
        facts_of(kind="cancelled", location_type="phone", organisation="PMI-Seine-Saint-Denis-Bobigny Centre-Nord",
                 motif="", person="Emma", phone="+262692123456"),
        "PMI-Seine-Saint-Denis-Bobigny : le RDV téléphonique d'Emma du mar. 24/11 à 9h30 est annulé. "
        "Pour un nouveau RDV : Tél 0692 12 34 56."),
    "a sender of exactly 32 septets is kept as written": (
        facts_of(kind="reminder", motif="Entretien prénatal précoce", organisation="Centre social de la Grande Place",
                 lieu_name="PMI Nanterre", lieu_address="12 avenue du Général de Gaulle, 92000 Nanterre"),
        "Centre social de la Grande Place : rappel, RDV mar. 24/11 à 9h30, PMI Nanterre. Infos/annuler : "
        + link_of(20)),
    "what is given back may fill the segment to its last septet": (
        facts_of(motif="Consultation de puériculture et pesée du nourrisson", organisation="Centre social de la Grande Place",
                 lieu_name="PMI Nanterre", note="Pensez au carnet de santé.", link=link_of(35)),
        "Centre social de la Grande Place : RDV confirmé le mar. 24/11 à 9h30, PMI Nanterre. Infos/annuler : "
        + link_of(35)),
    "last, the label of the link goes, then the sender is cut to its first word": (
        facts_of(kind="changed", location_type="phone", motif="Consultation de puériculture et pesée du nourrisson",
                 organisation="Maison des solidarités de Nanterre Centre", note="Pensez au carnet de santé.",
                 link=link_of(35)),
        "Maison : votre RDV téléphonique est déplacé au mar. 24/11 à 9h30, nous vous appelons. " + link_of(35)),
}


@pytest.mark.parametrize("case", SHORTENINGS)
def test_each_shortening_step_gives_the_text_a_family_reads(case):
    facts, expected = SHORTENINGS[case]
    text = compose(facts)
    assert_one_gsm7_segment_with_link(text, facts)
    assert text == expected


class _NoOffset(tzinfo):
    """A time zone that knows no offset: Python counts such a datetime as naive."""

    def utcoffset(self, dt):
        return None


def test_a_time_whose_zone_gives_no_offset_is_refused_like_a_naive_one():
    with pytest.raises(ValueError):
        replace(SHORT, starts_at_local=datetime(2026, 11, 24, 9, 30, tzinfo=_NoOffset()))


def test_the_settings_page_reads_exact_french_refusals():
    with pytest.raises(WordingError) as refused:
        checked_note("Voir www.pmi92.fr")
    assert str(refused.value) == "Pas d'adresse web dans la phrase : le lien du rendez-vous est déjà dans chaque SMS."
    with pytest.raises(WordingError) as refused:
        checked_label("59 - 62")
    assert str(refused.value) == ("Le nom d'expéditeur des SMS doit contenir au moins une lettre "
                                  "(exemple : PMI du Nord).")
    with pytest.raises(WordingError) as refused:
        checked_note("Bonne journée 🙂🙃")
    assert str(refused.value) == ("Ces caractères n'existent pas dans l'alphabet des SMS (ils feraient passer le "
                                  "message en Unicode, 70 caractères par SMS) : 🙂 🙃 — retirez-les.")


def test_a_question_mark_is_sendable_a_letter_of_another_script_is_not():
    assert checked_note("Une question ?") == "Une question ?"
    with pytest.raises(WordingError, match="م"):
        checked_note("Bienvenue مرحبا")


def test_wording_limits_are_inclusive_and_a_missing_value_is_none():
    assert checked_note("x" * 59 + ".") == "x" * 59 + "."  # 60 septets, the most allowed
    assert checked_label("Centre social de la Grande Place") == "Centre social de la Grande Place"  # 32 septets
    assert checked_note(None) is None and checked_label(None) is None


def test_a_sender_label_loses_the_punctuation_around_it_not_its_letters():
    assert checked_label(" - PMI du Nord : ") == "PMI du Nord"
    assert checked_label("PMI Paris XX") == "PMI Paris XX"


# --- The receipt of the family's own cancellation (compose_receipt) ------------------------------------------------

FREED = "Merci : le créneau est libéré pour une autre famille."


@pytest.mark.parametrize(("changes", "expected"), [
    (dict(organisation="PMI Nord", person="Léa Marie"),  # everything fits; a first name is its first word
     "PMI Nord : le RDV de Léa du ven. 23/10 à 9h30 (Pesée) est annulé, comme demandé. " + FREED),
    (dict(organisation="PMI Nord", person="Emma", location_type="home"),
     "PMI Nord : la visite à domicile d'Emma du ven. 23/10 à 9h30 (Pesée) est annulée, comme demandé. " + FREED),
    (dict(organisation="PMI Nord", person="Léa", motif="Consultation de puériculture et pesée du nourrisson"),
     "PMI Nord : le RDV de Léa du ven. 23/10 à 9h30 est annulé, comme demandé. " + FREED),  # the motif goes first
    (dict(organisation="PMI Hauts-de-Seine", person="Marie-Emmanuelle", location_type="phone"),
     "PMI Hauts-de-Seine : votre RDV téléphonique du ven. 23/10 à 9h30 est annulé, comme demandé. " + FREED),
    (dict(organisation="Centre social de la Grande Place", person="Marie-Emmanuelle", location_type="home"),
     "Centre social de la Grande Place : votre visite à domicile du ven. 23/10 à 9h30 est annulée. " + FREED),
    (dict(organisation="Protection maternelle et infantile de Seine-Saint-Denis", person="Marie-Emmanuelle"),
     "PMI de Seine-Saint-Denis : le RDV de Marie-Emmanuelle du ven. 23/10 à 9h30 est annulé, comme demandé. "
     + FREED),  # a long sender is abbreviated
    (dict(organisation="PMI-Seine-Saint-Denis-Bobigny Centre-Nord", person="Marie-Emmanuelle"),
     "PMI-Seine-Saint-Denis-Bobigny : le RDV de Marie-Emmanuelle du ven. 23/10 à 9h30 est annulé, comme demandé. "
     + FREED),  # then cut at a word, to one word if need be: 160 septets exactly
    (dict(organisation="Conseil départemental des Hauts-de-Seine", person="Marie-Emmanuelle", location_type="home"),
     "Conseil départemental : votre visite à domicile du ven. 23/10 à 9h30 est annulée, comme demandé. " + FREED),
    (dict(organisation="PMI Nord", person=None),  # an rdv of the adult reached
     "PMI Nord : votre RDV du ven. 23/10 à 9h30 (Pesée) est annulé, comme demandé. " + FREED),
    (dict(organisation="– PMI Paris XX :", person="Léa"),  # the punctuation around the sender goes, not its XX
     "PMI Paris XX : le RDV de Léa du ven. 23/10 à 9h30 (Pesée) est annulé, comme demandé. " + FREED),
    (dict(organisation="PMI boulevard de la Villette 19e", person="Léa"),  # 32 septets: kept as written
     "PMI boulevard de la Villette 19e : le RDV de Léa du ven. 23/10 à 9h30 (Pesée) est annulé, comme demandé. "
     + FREED),
    (dict(organisation=" ", person="Léa"),
     "Le RDV de Léa du ven. 23/10 à 9h30 (Pesée) est annulé, comme demandé. " + FREED),
    (dict(organisation="Conseil-départemental-Hauts-de-Seine", person="Marie-Emmanuelle", location_type="home"),
     "La visite à domicile de Marie-Emmanuelle du ven. 23/10 à 9h30 (Pesée) est annulée, comme demandé. " + FREED),
])
def test_the_receipt_keeps_the_thanks_and_drops_the_motif_the_name_then_comme_demande(changes, expected):
    facts = replace(SHORT, kind="cancelled", starts_at_local=datetime(2026, 10, 23, 9, 30, tzinfo=PARIS),
                    **{"motif": "Pesée", **changes})
    text = compose_receipt(facts)
    assert text == expected
    assert segments_of(text) == 1 and LINK not in text and "Tél" not in text


def test_a_cost_sentence_counts_as_kept_when_there_is_none_to_add():
    # The settings page refuses a sentence when a sample reminder would go without it: with no sentence, or for a
    # kind of SMS that never carries one, nothing is refused.
    assert cost_kept(replace(SHORT, cost=None))
    assert cost_kept(replace(SHORT, kind="created", cost="Un RDV manqué prive une autre famille."))
