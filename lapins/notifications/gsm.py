"""The GSM 03.38 alphabet (GSM-7): which characters an SMS carries as septets, transliteration, billed segments.

A text made only of GSM-7 characters travels in 7-bit septets: 160 in one SMS, 153 per part once it is split
(each part carries a 7-septet header). A character of the extension table is sent as ESC + character: 2 septets,
never split across two parts. Any other character turns the whole text into UCS-2: 70 UTF-16 code units in one
SMS, 67 per part, a surrogate pair (an emoji) never split. `transliterate` keeps French texts in GSM-7.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# 3GPP TS 23.038, default alphabet, in code order; 0x1B (escape to the extension table) is not a character.
BASIC_CHARSET = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# The default extension table: each costs 2 septets (ESC + code). \f is the form feed (page break) of the standard.
EXTENSION_CHARSET = "\f^{}\\[~]|€"

SINGLE_SEGMENT_SEPTETS = 160
MULTIPART_SEGMENT_SEPTETS = 153
SINGLE_SEGMENT_UCS2 = 70
MULTIPART_SEGMENT_UCS2 = 67

_BASIC = frozenset(BASIC_CHARSET)
_EXTENSION = frozenset(EXTENSION_CHARSET)
_GSM7 = _BASIC | _EXTENSION
_EXTENSION_ORDER = tuple(sorted(_EXTENSION))
_GUILLEMETS = re.compile(r"«\s*|\s*»")

# Characters written by hand rather than left to the generic rules below, so that French text reads naturally.
# French letters that NFKD would also handle are listed anyway: this table is the documentation of what happens.
REPLACEMENTS: dict[str, str] = {
    # Accented letters outside GSM-7 (é è à ù ì ò É Ç ä ö ü ñ Ä Ö Ü Ñ are in it and stay).
    "ç": "c",
    "â": "a", "ê": "e", "î": "i", "ô": "o", "û": "u", "ë": "e", "ï": "i", "ÿ": "y",
    "Â": "A", "Ê": "E", "Î": "I", "Ô": "O", "Û": "U", "Ë": "E", "Ï": "I", "Ÿ": "Y", "È": "E", "À": "A",
    "Ù": "U", "Ì": "I", "Ò": "O",
    "œ": "oe", "Œ": "OE",
    # Letters without a Unicode decomposition.
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ı": "i", "ĸ": "k",
    "µ": "u",  # the micro sign, whose decomposition is the Greek mu
    # Typography of French word processors and phones.
    "’": "'", "‘": "'", "‚": "'", "‛": "'", "′": "'", "ʼ": "'", "`": "'", "´": "'", "‹": "'", "›": "'",
    "«": '"', "»": '"', "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"',
    "–": "-", "—": "-", "‐": "-", "‑": "-", "‒": "-", "―": "-", "−": "-",
    "…": "...",
    "\u00a0": " ", "\u202f": " ", "\u2007": " ", "\u2009": " ", "\t": " ",
    "·": ".", "•": "-", "°": "o", "º": "o", "ª": "a", "×": "x", "÷": "/", "⁄": "/",
    "©": "(c)", "®": "(R)", "¨": "", "¸": "", "ˆ": "^", "˜": "~",
}


def is_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM-7 default alphabet or its extension table."""
    return all(char in _GSM7 for char in text)


def septets(text: str) -> int:
    """The GSM-7 length of `text`: 1 septet per character, 2 for an extension character.

    Raises ValueError when `text` holds a character outside GSM-7 (it would be sent as UCS-2).
    """
    # Counted by str and set methods, not a loop over the characters: the composer measures each SMS a dozen times.
    if not _GSM7.issuperset(text):
        char = next(char for char in text if char not in _GSM7)
        raise ValueError(f"{char!r} (U+{ord(char):04X}) is not a GSM-7 character")
    if _EXTENSION.isdisjoint(text):  # the usual case, in one pass
        return len(text)
    return len(text) + sum(text.count(char) for char in _EXTENSION_ORDER)


def segments(text: str) -> int:
    """How many SMS a carrier bills for `text` (an empty text is still one SMS)."""
    if is_gsm7(text):
        costs = [2 if char in _EXTENSION else 1 for char in text]
        single, part = SINGLE_SEGMENT_SEPTETS, MULTIPART_SEGMENT_SEPTETS
    else:
        costs = [len(char.encode("utf-16-le", "surrogatepass")) // 2 for char in text]
        single, part = SINGLE_SEGMENT_UCS2, MULTIPART_SEGMENT_UCS2
    if sum(costs) <= single:
        return 1
    return _parts(costs, part)


def _parts(costs: list[int], size: int) -> int:
    # A character is never split across two parts, so a part may end up to one septet (or code unit) short.
    count, used = 1, 0
    for cost in costs:
        if used + cost > size:
            count, used = count + 1, 0
        used += cost
    return count


def transliterate(text: str) -> str:
    """`text` in GSM-7, as readable as possible; deterministic, and transliterate(transliterate(x)) == transliterate(x).

    The text is first composed (NFC: an "e" followed by a combining acute is "é", which is GSM-7), and French
    guillemets lose their inner spaces (« oui » → "oui"). Then each character, in this order:
    1. stays if it is GSM-7 (é è à ù Ç ä ö ü ñ ß Æ æ Ø ø Å å, the extension characters ^ { } \\ [ ~ ] | €, ...);
    2. is replaced as written in REPLACEMENTS (ç→c, ê→e, È→E, œ→oe, ’→', «»→", –→-, …→..., no-break spaces→space);
    3. becomes a space when it is any other white space;
    4. is decomposed (NFKD) and each piece goes through 1–3, combining accents being dropped (á→a, ő→o, ﬁ→fi, ²→2);
    5. otherwise, by Unicode category: a dash becomes "-", an opening or closing quote '"', a digit its ASCII digit;
       accents, control and invisible characters (zero-width joiner, variation selectors, soft hyphen), emoji and
       other symbols are dropped; anything else (a letter of another script) becomes "?", the last resort.
    """
    text = unicodedata.normalize("NFC", text)
    text = _GUILLEMETS.sub('"', text)
    return "".join(_transliterate_char(char) for char in text)


@lru_cache(maxsize=4096)
def _transliterate_char(char: str) -> str:
    direct = _direct(char)
    if direct is not None:
        return direct
    decomposed = unicodedata.normalize("NFKD", char)
    if decomposed != char:
        return "".join(_piece(piece) for piece in decomposed)
    return _by_category(char)


def _direct(char: str) -> str | None:
    if char in _GSM7:
        return char
    if char in REPLACEMENTS:
        return REPLACEMENTS[char]
    if char.isspace():
        return " "
    return None


def _piece(char: str) -> str:
    direct = _direct(char)
    return direct if direct is not None else _by_category(char)


def _by_category(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Pd":
        return "-"
    if category in ("Pi", "Pf"):
        return '"'
    if category == "Nd":
        return str(unicodedata.digit(char))
    # Marks, controls, format characters, surrogates, private use, unassigned; emoji and other symbols.
    if category[0] in "MC" or category in ("So", "Sk"):
        return ""
    return "?"
