"""The French SMS texts a family receives about an rdv, each one GSM-7 segment (160 septets at most).

`compose` builds the text from facts, never from ORM objects. Mandatory: who sends it (the organisation), what
happens (confirmed, moved, cancelled, reminder), the local date and time, the family's link, and for a reminder
with two-way SMS the reply instructions. Optional, from the most to the least valuable: the place (lieu, then its
address), the phone to call, the motif, the child's or usager's first name; a territory's own sentence (its
note) comes before all of them.

When the text is too long, it is shortened in this order until it fits:
1. harmless shortenings: "protection maternelle et infantile" → "PMI", "avenue" → "av.", "boulevard" → "bd", a
   sender label over 32 septets cut at a word;
2. from the least valuable up: a first name is reduced to its first word then dropped, the motif is cut at a word
   boundary (no ellipsis, no dangling "de" or "et") then dropped, the reply instructions take their short form
   ("Répondez OUI ou ANNULER."), the phone is dropped, the address loses its last parts (city, postcode) then is
   dropped, the lieu is cut at a word then dropped, the territory's note is dropped (whole: a cut sentence would
   read wrong), then the "Infos/annuler :" label of the link goes, and last the sender label is cut at a word, then
   dropped;
3. what was lost is given back, from the most valuable part down, as far as the room left allows.
A reminder may end with the territory's **cost sentence** (« Un RDV manqué, c'est une place perdue pour une autre
famille. »: saying what a missed rdv costs lowered no-shows from 11.1 % to 8.4 %, Hallsworth et al. 2015): unlike the
note, it is the first part dropped and the last given back, so it is there only when the whole reminder still fits
one segment (`cost_kept`).
A cancellation keeps the phone to call for a new rdv; its link may go, but only when that phone is there.
The link is never cut, so a link of up to MAX_LINK_SEPTETS always fits (SmsFacts refuses longer ones).

**A territory's wording** (Territory.sms_label and .sms_note_<kind>, set on the territory settings page) is not a template with placeholders: the
facts, their order and their shortening stay this module's, so no wording can break the one-segment guarantee.
A territory may set a sender label (it stands for the organisation's name, with the same shortening) and, per kind
of SMS, one short sentence ("Pensez au carnet de santé."), an optional part with its place in the order above:
above every optional fact (the territory chose to say it, and the family's page gives the facts in full), below
the link, its label and the sender. One segment leaves little room (a two-way reminder keeps some 40 septets for
the place and the sentence together): a sentence costs the other optional parts first, as the settings page's
preview shows, and is itself dropped only when the facts that must be there leave no room for it. Both
are checked when saved (`checked_note`, `checked_label`): GSM-7 after transliteration (œ → oe), characters that
would force UCS-2 and have no GSM-7 form (emoji, other scripts) refused, no web address, at most MAX_NOTE_SEPTETS /
MAX_ORGANISATION_SEPTETS. The settings page also refuses a sentence that would be dropped from one of its sample
texts (`note_kept`): a sentence that saving accepts appears in every ordinary SMS of its kind.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from lapins.notifications.gsm import SINGLE_SEGMENT_SEPTETS, is_gsm7, segments, septets, transliterate
from lapins.locale.phones import FRENCH_REGIONS

Kind = Literal["created", "changed", "cancelled", "reminder"]
LocationType = Literal["on_site", "phone", "home"]
KINDS: tuple[Kind, ...] = ("created", "changed", "cancelled", "reminder")
LOCATION_TYPES: tuple[LocationType, ...] = ("on_site", "phone", "home")

# Room left by the longest mandatory text (reminder of a phone rdv, short reply instructions, no sender label).
MAX_LINK_SEPTETS = 60
# Longer "phones" are not phone numbers a family could dial.
MAX_PHONE_SEPTETS = 20
MAX_ORGANISATION_SEPTETS = 32
MAX_NOTE_SEPTETS = 60

DAY_ABBREVIATIONS = ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")
REPLY_LONG = "Répondez OUI pour confirmer, ANNULER pour annuler."
REPLY_SHORT = "Répondez OUI ou ANNULER."
CALL_NOTE = "nous vous appelons"


@dataclass(frozen=True, kw_only=True)
class SmsFacts:
    """What a family must be told about one rdv. `starts_at_local` is aware and already in the territory's zone."""

    kind: Kind
    starts_at_local: datetime
    motif: str
    location_type: LocationType
    link: str
    organisation: str
    region: str = "FR"  # numbering region of the territory, to read a phone stored in national format
    lieu_name: str | None = None
    lieu_address: str | None = None
    phone: str | None = None
    person: str | None = None
    two_way: bool = False  # a reminder asks the family to reply OUI or ANNULER
    note: str | None = None  # the territory's own sentence for this kind of SMS (checked_note)
    # What a missed rdv costs, in the territory's words (checked_note): reminders only, and only when it fits.
    cost: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown SMS kind {self.kind!r}")
        if self.location_type not in LOCATION_TYPES:
            raise ValueError(f"unknown location type {self.location_type!r}")
        if self.starts_at_local.tzinfo is None or self.starts_at_local.utcoffset() is None:
            raise ValueError("starts_at_local must be an aware datetime in the territory's time zone")
        if not self.link or not is_gsm7(self.link) or any(char.isspace() for char in self.link):
            raise ValueError(f"the link must be a GSM-7 URL without spaces, got {self.link!r}")
        if septets(self.link) > MAX_LINK_SEPTETS:
            raise ValueError(f"the link is longer than {MAX_LINK_SEPTETS} septets: it could not fit in one SMS")


def compose(facts: SmsFacts) -> str:
    """The GSM-7 text of the SMS, at most 160 septets (one segment)."""
    return _composed(facts)[0]


def note_kept(facts: SmsFacts) -> bool:
    """Whether the territory's note is in the text of these facts, in full (True when there is no note)."""
    return not facts.note or _composed(facts)[1]["note"] is not None


def cost_kept(facts: SmsFacts) -> bool:
    """Whether the territory's cost sentence is in this reminder's text (True when there is none to add)."""
    return facts.kind != "reminder" or not facts.cost or _composed(facts)[1]["cost"] is not None


def _composed(facts: SmsFacts) -> tuple[str, Parts]:
    parts = _initial_parts(facts)
    harmless, lossy = _shortenings(facts, parts)
    _shorten(facts, parts, harmless)
    before_losses = dict(parts)
    _shorten(facts, parts, lossy)
    _refill(facts, parts, before_losses, lossy)
    text = _render(facts, parts)
    if septets(text) > SINGLE_SEGMENT_SEPTETS:  # unreachable with the limits SmsFacts enforces
        raise ValueError(f"SMS text does not fit in one segment: {text!r}")
    return text, parts


def segments_of(text: str) -> int:
    """How many SMS a carrier bills for `text` (see lapins.notifications.gsm.segments)."""
    return segments(text)


def format_when(starts_at_local: datetime) -> str:
    """« mar. 24/11 à 9h30 », « dim. 03/01 à 14h », « jeu. 31/12 à 0h05 »: the wall time as given."""
    # Kept by wall time: two aware datetimes of one instant in two zones are equal, and would share a text.
    return _format_wall(starts_at_local.replace(tzinfo=None))


@lru_cache(maxsize=1024)  # the composer renders a text up to twenty times while shortening it
def _format_wall(wall: datetime) -> str:
    return f"{DAY_ABBREVIATIONS[wall.weekday()]} {wall.day:02d}/{wall.month:02d} à {clock(wall)}"


def clock(local: datetime) -> str:
    """« 9h30 », « 14h »: a wall time as every SMS writes it."""
    return f"{local.hour}h{local.minute:02d}" if local.minute else f"{local.hour}h"


@lru_cache(maxsize=4096)  # a worker sends the same few lieux' numbers all day: parsing one costs ~50 µs
def display_phone(raw: str | None, region: str) -> str | None:
    """The number to call as a French reader dials it ("01 41 37 10 00", "0262 12 34 56"), None if unusable.

    French numbers (metropolitan and overseas) are shown in national format, foreign ones in international format;
    an unparsable value (a short number such as "3919") is kept as stored when it looks like a number.
    """
    text = " ".join((raw or "").split())
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        number = None
    if number is not None and phonenumbers.is_valid_number(number):
        french = phonenumbers.region_code_for_number(number) in FRENCH_REGIONS
        shown_as = PhoneNumberFormat.NATIONAL if french else PhoneNumberFormat.INTERNATIONAL
        text = phonenumbers.format_number(number, shown_as)
    text = transliterate(text)
    if len(text) > MAX_PHONE_SEPTETS or not re.fullmatch(r"\+?[0-9][0-9 .()-]*", text):
        return None
    return text


# --- Sentences ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Noun:
    bare: str  # "RDV de Léa confirmé"
    definite: str  # "le RDV de Léa est déplacé"
    yours: str  # "votre RDV est déplacé"
    feminine: bool


_NOUNS = {
    "on_site": _Noun("RDV", "le RDV", "votre RDV", feminine=False),
    "phone": _Noun("RDV téléphonique", "le RDV téléphonique", "votre RDV téléphonique", feminine=False),
    "home": _Noun("visite à domicile", "la visite à domicile", "votre visite à domicile", feminine=True),
}

Parts = dict[str, str | None]


def _render(facts: SmsFacts, parts: Parts) -> str:
    noun = _NOUNS[facts.location_type]
    agreement = "e" if noun.feminine else ""
    when = format_when(facts.starts_at_local)
    person = parts["person"]
    named = f"{noun.bare} {_of(person)}" if person else noun.bare
    yours = f"{noun.definite} {_of(person)}" if person else noun.yours
    motif = f" ({parts['motif']})" if parts["motif"] else ""
    where = _where(facts.location_type, parts)

    if facts.kind == "created":
        lead = f"{named} confirmé{agreement} le {when}{motif}{where}"
    elif facts.kind == "changed":
        lead = f"{yours} est déplacé{agreement} au {when}{motif}{where}"
    elif facts.kind == "reminder":
        lead = f"rappel, {named} {when}{motif}{where}"
    else:
        lead = f"{yours} du {when}{motif} est annulé{agreement}"

    sentences = [_sentence(lead)]
    if parts["phone"]:
        call = "Pour un nouveau RDV : Tél" if facts.kind == "cancelled" else "Tél"
        sentences.append(f"{call} {parts['phone']}.")
    if parts["note"]:
        sentences.append(_sentence(parts["note"]))
    if parts["cost"]:
        sentences.append(_sentence(parts["cost"]))
    if parts["reply"]:
        sentences.append(parts["reply"])
    if parts["link"]:
        # The link ends the text: nothing glued to it that a phone could take for part of the URL.
        sentences.append(f"{parts['label']} {parts['link']}" if parts["label"] else parts["link"])
    text = " ".join(sentences)
    organisation = parts["organisation"]
    return f"{organisation} : {text}" if organisation else text[0].upper() + text[1:]


def _of(person: str) -> str:
    """« de Léa », « d'Emma »: "de" elides before a vowel (not before H, which may be aspirated: « de Hugo »)."""
    return f"d'{person}" if person[0] in "AEIOUÉÈÄÖÜÅÆØaeiouéèäöüåæø" else f"de {person}"


def _where(location_type: str, parts: Parts) -> str:
    if location_type == "phone":
        return f", {CALL_NOTE}"
    if location_type == "home":
        return ""
    place = ", ".join(part for part in (parts["lieu"], parts["address"]) if part)
    return f", {place}" if place else ""


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _initial_parts(facts: SmsFacts) -> Parts:
    on_site = facts.location_type == "on_site"
    if facts.kind == "cancelled":
        label = "Infos :"
    elif facts.kind == "reminder" and facts.two_way:
        label = "Infos :"  # cancelling is the reply ANNULER
    else:
        label = "Infos/annuler :"
    return {
        "organisation": _clean(facts.organisation, strip=" ,;:-"),
        "person": _clean(facts.person),
        "motif": _clean(facts.motif),
        "lieu": _clean(facts.lieu_name) if on_site else None,
        "address": _clean(facts.lieu_address) if on_site else None,
        "phone": display_phone(facts.phone, facts.region),
        "reply": REPLY_LONG if facts.kind == "reminder" and facts.two_way else None,
        "note": _clean(facts.note),
        "cost": _clean(facts.cost) if facts.kind == "reminder" else None,
        "label": label,
        "link": facts.link,
    }


def _clean(value: str | None, strip: str = " ,;") -> str | None:
    """A stored value as one GSM-7 line: lines joined by commas, runs of spaces collapsed."""
    if not value:
        return None
    text = transliterate(value)
    text = re.sub(r"\s*[\r\n\f]+\s*", ", ", text)
    text = re.sub(r"\s+", " ", text).strip(strip)
    return text or None


# --- Shortening --------------------------------------------------------------------------------------------------

Shorten = Callable[[str, int], str | None]
"""(current value, septets over the limit) → a strictly shorter value, the same value (nothing to do), or None."""
Step = tuple[str, Shorten]

_ABBREVIATIONS = (
    (re.compile(r"\bprotection maternelle et infantile\b(\s*\(PMI\))?", re.IGNORECASE), "PMI"),
    (re.compile(r"\bavenue\b", re.IGNORECASE), "av."),
    (re.compile(r"\bboulevard\b", re.IGNORECASE), "bd"),
)
# A text cut at a word never ends on one of these: "Consultation de puériculture et" → "Consultation de puériculture".
_DANGLING = frozenset({
    "à", "a", "au", "aux", "de", "des", "du", "d'", "l'", "la", "le", "les", "et", "ou", "en", "pour", "par", "sur",
    "avec", "chez", "dans", "sans", "rue", "av.", "avenue", "bd", "boulevard", "place", "chemin", "allée", "allee",
    "impasse", "route", "quai", "cours",
})


def _shortenings(facts: SmsFacts, parts: Parts) -> tuple[list[Step], list[Step]]:
    """The harmless shortenings, then the lossy ones from the least valuable part up."""
    harmless: list[Step] = [
        ("address", _abbreviate),
        ("lieu", _abbreviate),
        ("organisation", _abbreviate),
        ("organisation", lambda value, _: _cut_at_word(value, MAX_ORGANISATION_SEPTETS, min_words=1) or value),
    ]
    if facts.kind == "cancelled":
        lossy: list[Step] = [("person", _first_word), ("motif", _cut(min_words=2)), ("note", _drop)]
        if parts["phone"]:
            lossy.append(("link", _drop))
        lossy.append(("label", _drop))
    else:
        lossy = [
            ("cost", _drop),  # added only to a reminder that has room for it: it costs no other part
            ("person", _first_word),
            ("motif", _cut(min_words=2)),
            ("reply", lambda value, _: REPLY_SHORT),
            ("phone", _drop),
            ("address", _drop_last_part),
            ("lieu", _cut(min_words=2)),
            ("note", _drop),
            ("label", _drop),
        ]
    lossy.append(("organisation", _cut(min_words=1)))
    return harmless, lossy


def _overflow(facts: SmsFacts, parts: Parts) -> int:
    return septets(_render(facts, parts)) - SINGLE_SEGMENT_SEPTETS


def _shorten(facts: SmsFacts, parts: Parts, steps: list[Step]) -> int:
    """Apply each step in turn, as long as the text is too long; the overflow left (≤ 0: it fits)."""
    # Measured again only after a change: most texts fit at once, and rendering is the composer's cost.
    overflow = _overflow(facts, parts)
    for key, shorten in steps:
        while overflow > 0 and parts[key] is not None:
            shorter = shorten(parts[key], overflow)
            if shorter == parts[key]:
                break
            parts[key] = shorter
            overflow = _overflow(facts, parts)
    return overflow


def _refill(facts: SmsFacts, parts: Parts, before: Parts, steps: list[Step]) -> None:
    """Give back, from the most valuable part down, what the room left by later losses can hold again.

    Shortening the least valuable parts first may free more room than needed (the motif went, then the lieu had to
    be cut anyway): the first name or a cut motif may then fit again.
    """
    keys = list(dict.fromkeys(key for key, _ in reversed(steps)))
    for key in keys:
        if parts[key] == before[key]:
            continue
        candidate = {**parts, key: before[key]}
        overflow = _shorten(facts, candidate, [step for step in steps if step[0] == key])
        if candidate[key] is not None and overflow <= 0:
            parts[key] = candidate[key]


def _abbreviate(value: str, _overflow: int) -> str:
    for pattern, abbreviation in _ABBREVIATIONS:
        value = pattern.sub(abbreviation, value)
    return value


def _drop(_value: str, _overflow: int) -> None:
    return None


def _first_word(value: str, _overflow: int) -> str | None:
    first = value.split(" ")[0]
    return first if first != value else None


def _drop_last_part(value: str, _overflow: int) -> str | None:
    """« 12 rue Victor Hugo, 92000 Nanterre » → « 12 rue Victor Hugo » → None: a street is never cut mid-name."""
    pieces = [piece for piece in re.split(r",\s*|\s+(?=\d{5}\b)", value) if piece]
    return ", ".join(pieces[:-1]) if len(pieces) > 1 else None


def _cut(min_words: int) -> Shorten:
    def shorten(value: str, overflow: int) -> str | None:
        return _cut_at_word(value, septets(value) - overflow, min_words)

    return shorten


def _cut_at_word(value: str, max_septets: int, min_words: int) -> str | None:
    """The longest run of whole leading words within `max_septets`, or None if fewer than `min_words` remain."""
    if septets(value) <= max_septets:
        return value
    kept: list[str] = []
    for word in value.split(" "):
        if septets(" ".join([*kept, word])) > max_septets:
            break
        kept.append(word)
    while kept:
        last = kept[-1].rstrip(",;:-/(")
        if not last or last.lower() in _DANGLING:
            kept.pop()
            continue
        kept[-1] = last
        break
    return " ".join(kept) if len(kept) >= min_words else None


# --- A territory's wording ---------------------------------------------------------------------------------------

class WordingError(ValueError):
    """Why a territory's wording is refused, in French."""


_WEB_ADDRESS = re.compile(r"://|\bwww\.|\.(fr|com|org|net)\b", re.IGNORECASE)


def unsendable_characters(text: str) -> list[str]:
    """The characters of `text` that have no GSM-7 form: transliteration would drop them or write "?"."""
    found: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        shown = transliterate(char)
        if (shown == "" or (shown == "?" and char != "?")) and not char.isspace() and char not in found:
            found.append(char)
    return found


def checked_note(text: str | None) -> str | None:
    """A territory's sentence as it is stored and sent (GSM-7, ending with a stop), or None when blank."""
    if not text or not text.strip():
        return None
    _refuse_unsendable(text)
    note = _clean(text)
    if not note:
        return None
    note = _sentence(note)
    if _WEB_ADDRESS.search(note):
        raise WordingError("Pas d'adresse web dans la phrase : le lien du rendez-vous est déjà dans chaque SMS.")
    if (length := septets(note)) > MAX_NOTE_SEPTETS:
        raise WordingError(f"Phrase trop longue : {length} caractères SMS, {MAX_NOTE_SEPTETS} au plus.")
    return note


def checked_label(text: str | None) -> str | None:
    """A territory's sender label (it stands for the organisation's name), or None when blank."""
    if not text or not text.strip():
        return None
    _refuse_unsendable(text)
    label = _clean(text, strip=" ,;:-")
    if not label:
        return None
    if not any(char.isalpha() for char in label):
        raise WordingError("Le nom d'expéditeur des SMS doit contenir au moins une lettre (exemple : PMI du Nord).")
    if (length := septets(label)) > MAX_ORGANISATION_SEPTETS:
        raise WordingError(f"Nom d'expéditeur trop long : {length} caractères SMS, {MAX_ORGANISATION_SEPTETS} au "
                           "plus.")
    return label


def _refuse_unsendable(text: str) -> None:
    refused = unsendable_characters(text)
    if refused:
        raise WordingError(f"Ces caractères n'existent pas dans l'alphabet des SMS (ils feraient passer le message en "
                           f"Unicode, 70 caractères par SMS) : {' '.join(refused)} — retirez-les.")


# --- The family's own cancellation: a receipt ---------------------------------------------------------------------

FREED = "Merci : le créneau est libéré pour une autre famille."


def compose_receipt(facts: SmsFacts) -> str:
    """The receipt of a cancellation the family made on its link, one GSM-7 segment: « PMI Nord : le RDV de Léa du
    ven. 23/10 à 9h30 (Pesée) est annulé, comme demandé. Merci : le créneau est libéré pour une autre famille. »
    No link (the family's page only says it is cancelled) and no phone: the family chose. The thanks and the freed
    slot always stay; the motif goes first, then the first name, « comme demandé », last the sender."""
    noun = _NOUNS[facts.location_type]
    agreement = "e" if noun.feminine else ""
    when = format_when(facts.starts_at_local)
    organisation = _clean(facts.organisation, strip=" ,;:-")
    if organisation and septets(organisation) > MAX_ORGANISATION_SEPTETS:
        organisation = _cut_at_word(_abbreviate(organisation, 0), MAX_ORGANISATION_SEPTETS, min_words=1)
    person = (_clean(facts.person) or "").split(" ")[0] or None
    motif = _clean(facts.motif)
    options = [(organisation, person, motif, True), (organisation, person, None, True),
               (organisation, None, None, True), (organisation, None, None, False), (None, None, None, False)]
    for sender, who, what, asked in options:
        yours = f"{noun.definite} {_of(who)}" if who else noun.yours
        lead = f"{yours} du {when}{f' ({what})' if what else ''} est annulé{agreement}{', comme demandé' if asked else ''}."
        text = f"{lead} {FREED}"
        text = f"{sender} : {text}" if sender else text[0].upper() + text[1:]
        if septets(text) <= SINGLE_SEGMENT_SEPTETS:
            return text
    raise ValueError("receipt SMS does not fit in one segment")  # unreachable: the last option is 110 septets


# --- Offers of freed slots (the waiting list) --------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class OfferFacts:
    """A freed slot offered to a waiting family; both instants aware and already in the territory's zone.
    `person` is the child's first name (None when the slot is for the adult reached), `location_type` says whether
    the place is the lieu, the family's home or a telephone call."""

    starts_at_local: datetime
    held_until_local: datetime
    link: str
    organisation: str
    motif: str | None = None
    person: str | None = None
    location_type: LocationType = "on_site"
    lieu_name: str | None = None
    lieu_address: str | None = None


MAX_OFFER_SEGMENTS = 2
_OFFER_MAX_SEPTETS = 2 * 153  # two concatenated GSM-7 parts (gsm.MULTIPART_SEGMENT_SEPTETS each)


def compose_offer(facts: OfferFacts) -> str:
    """« PMI Belleville : créneau libéré pour Léa, jeu. 04/03 à 10h (Pesée), Centre PMI Belleville. Acceptez
    avant 9h30 : <link> ».

    An offer out of the blue reads like spam unless it says who sends it, for whom, what, where, when and until
    when (issue 19.11): all of these stay. One segment when they fit (the lieu's address goes first to make them
    fit), otherwise two segments with everything, the address included; only names too long for two segments are
    cut at a word (the motif, then the lieu), never the sender, the time, the hold's end or the link."""
    if septets(facts.link) > MAX_LINK_SEPTETS or not is_gsm7(facts.link):
        raise ValueError("the offer link must be a GSM-7 URL that fits in one SMS")
    organisation = _clean(facts.organisation, strip=" ,;:-")
    if organisation and septets(organisation) > MAX_ORGANISATION_SEPTETS:
        organisation = _cut_at_word(_abbreviate(organisation, 0), MAX_ORGANISATION_SEPTETS, min_words=1)
    person = ((_clean(facts.person) or "").split(" ")[0] or None)
    if person and septets(person) > 20:
        person = None
    motif = _clean(facts.motif)
    on_site = facts.location_type == "on_site"
    lieu = _abbreviate(_clean(facts.lieu_name) or "", 0) or None if on_site else None
    address = _abbreviate(_clean(facts.lieu_address) or "", 0) or None if on_site else None

    def render(motif: str | None, lieu: str | None, address: str | None) -> str:
        until = facts.held_until_local
        what = f" ({motif})" if motif else ""
        if facts.location_type == "phone":
            where = ", RDV téléphonique"
        elif facts.location_type == "home":
            where = ", visite à domicile"
        else:
            where = "".join(f", {part}" for part in (lieu, address) if part)
        text = (f"créneau libéré pour {person or 'vous'}, {format_when(facts.starts_at_local)}{what}{where}. "
                f"Acceptez avant {clock(until)} : {facts.link}")
        return f"{organisation} : {text}" if organisation else text[0].upper() + text[1:]

    for limit in (SINGLE_SEGMENT_SEPTETS, _OFFER_MAX_SEPTETS):
        for candidate in (render(motif, lieu, address), render(motif, lieu, None)):
            if septets(candidate) <= limit:
                return candidate
    # Names too long for two segments: cut the motif, then the lieu, at a word, a little at a time.
    for cut in range(60, 0, -10):
        short_motif = _cut_at_word(motif, cut, min_words=1) if motif else None
        short_lieu = _cut_at_word(lieu, cut, min_words=1) if lieu else None
        for candidate in (render(short_motif, lieu, None), render(short_motif, short_lieu, None)):
            if septets(candidate) <= _OFFER_MAX_SEPTETS:
                return candidate
    raise ValueError("offer SMS does not fit in two segments")  # unreachable: a 10-septet motif and lieu fit
