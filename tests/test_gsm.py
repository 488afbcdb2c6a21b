"""GSM-7: French text stays readable in the 7-bit alphabet, and segments are counted as carriers bill them."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapins.notifications.gsm import (
    BASIC_CHARSET,
    EXTENSION_CHARSET,
    REPLACEMENTS,
    is_gsm7,
    segments,
    septets,
    transliterate,
)


def test_the_alphabet_has_its_127_characters_and_9_printable_extensions():
    assert len(set(BASIC_CHARSET)) == len(BASIC_CHARSET) == 127
    assert set("^{}\\[~]|€") <= set(EXTENSION_CHARSET)
    assert not set(BASIC_CHARSET) & set(EXTENSION_CHARSET)


@pytest.mark.parametrize(("typed", "sent"), [
    ("Ça commence à 9h", "Ça commence à 9h"),
    ("Françoise", "Francoise"),
    ("Hôpital, forêt, île, goûter, Noël, Maïwenn", "Hopital, foret, ile, gouter, Noel, Maiwenn"),
    ("L'Haÿ-les-Roses", "L'Hay-les-Roses"),
    ("ÂGE ÊTRE ÎLE ÔTER ÛR NOËL LAÏQUE ÈRE À", "AGE ETRE ILE OTER UR NOEL LAIQUE ERE A"),
    ("é è à ù ì ò É Ç ä ö ü ñ ß Æ æ Ø ø Å å", "é è à ù ì ò É Ç ä ö ü ñ ß Æ æ Ø ø Å å"),
    ("cœur, Œuvre, nævus", "coeur, OEuvre, nævus"),
    ("l’enfant ‘ici’", "l'enfant 'ici'"),
    ("« Bonjour » “oui”", '"Bonjour" "oui"'),
    ("9h30 – 10h — fin", "9h30 - 10h - fin"),
    ("À bientôt…", "A bientot..."),
    ("01\u00a041\u202f37 10 00", "01 41 37 10 00"),
    ("José, Ángel, Łukasz, Zoë", "José, Angel, Lukasz, Zoe"),
    ("n° 12, 2ᵉ étage, ﬁn", "no 12, 2e étage, fin"),
    ("Merci 😀👍🏽 !", "Merci  !"),
    ("e\u0301te\u0301", "été"),  # decomposed accents, as typed on some phones
    ("محمد", "????"),
    ("€ [x] {y} ~ | ^ \\", "€ [x] {y} ~ | ^ \\"),
    # Characters no table lists, read by their Unicode category (pasted from other software or keyboards):
    ("9h30\u200310h\u3000fin", "9h30 10h fin"),  # any other white space is one space
    ("10h⸺12h", "10h-12h"),  # a dash (Pd) with no decomposition
    ("⸂oui⸃", '"oui"'),  # opening (Pi) and closing (Pf) quotes
    ("٠١٢٣٤ ३", "01234 3"),  # digits (Nd) of other scripts
])
def test_transliteration_keeps_french_readable(typed, sent):
    assert transliterate(typed) == sent
    assert is_gsm7(sent)


def test_every_written_replacement_is_gsm7():
    assert all(is_gsm7(replacement) for replacement in REPLACEMENTS.values())


@settings(deadline=None)  # what is tested is the text, not how long an example takes on a shared machine
@given(st.text())
def test_any_text_becomes_gsm7_and_stays_as_it_is_once_transliterated(text):
    sent = transliterate(text)
    assert is_gsm7(sent)
    assert transliterate(sent) == sent


@settings(deadline=None)
@given(st.text(alphabet=st.characters(codec="latin-1") | st.sampled_from("œŒ’‘«»“”–—…\u00a0\u202fêâîôûëïÿ€")))
def test_french_text_never_loses_its_letters(text):
    # Every Latin letter of a French text comes out as a letter (never "?", never dropped).
    letters = [char for char in text if char.isalpha()]
    assert "?" not in transliterate("".join(letters))
    assert sum(char.isalpha() for char in transliterate("".join(letters))) >= len(letters)


def test_extension_characters_cost_two_septets():
    assert septets("abc") == 3
    assert septets("€") == 2
    assert septets("[~]") == 6
    assert septets("") == 0


def test_septets_refuses_what_gsm7_cannot_carry():
    assert not is_gsm7("ç")
    with pytest.raises(ValueError):
        septets("ç")


@pytest.mark.parametrize(("text", "billed"), [
    ("", 1),
    ("a" * 160, 1),
    ("a" * 161, 2),
    ("a" * 306, 2),
    ("a" * 307, 3),
    ("a" * 158 + "€", 1),  # 160 septets
    ("a" * 159 + "€", 2),  # 161 septets
    ("€" * 80, 1),
    ("€" * 81, 2),
    # 306 septets would fit in 2 × 153, but the € (ESC + code) cannot straddle the parts: 152 | € + 151 | 1.
    ("a" * 152 + "€" + "a" * 152, 3),
    ("a" * 151 + "€" + "a" * 153, 2),
])
def test_gsm7_segments_as_billed(text, billed):
    assert segments(text) == billed


@pytest.mark.parametrize(("text", "billed"), [
    ("ç" * 70, 1),
    ("ç" * 71, 2),
    ("ç" * 134, 2),
    ("ç" * 135, 3),
    ("a" * 159 + "ç", 3),  # one character outside GSM-7 turns the whole text into UCS-2: 160 units
    ("😀" * 35, 1),  # an emoji is 2 UTF-16 units
    ("😀" * 36, 2),
    # 134 units would fit in 2 × 67, but a surrogate pair is never split: 66 | 😀 × 33 | 😀.
    ("ç" * 66 + "😀" * 34, 3),
])
def test_ucs2_segments_as_billed(text, billed):
    assert segments(text) == billed
