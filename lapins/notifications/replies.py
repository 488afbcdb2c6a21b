"""Two-way SMS: what a family's reply OUI, ANNULER or CHANGER does, and the one-segment answer it gets.

Only where the territory's sender can take replies (`Territory.sms_takes_replies`: a number, or a Messaging Service,
never an alphanumeric sender). The reply is read against the family's coming live rdvs, found through the number it
came from (the usager's or the responsible adult's):
- OUI confirms the next one;
- ANNULER (or NON) cancels the next one, as the family would on its link (until the motif's limit). When another rdv
  of the same number starts within AMBIGUOUS_WITHIN of it (two children seen the same week), the family is asked
  which one by a numbered list, kept as sent (`SmsReplyRound`), and answers "ANNULER 2" (or just "2");
- CHANGER gets the link to the page where the family picks another time for the next one (lapins.family.moves),
  or, when the motif's limits leave it no move, the number to call;
- any other text from a known number gets the list of words understood, and OUI or ANNULER from a known number with
  no rdv to come is told so; an unknown number (no usager of the territory has it) gets no answer: each answer is a
  billed SMS, and anyone may text the territory's number.
Nothing the family sent is logged.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import aliased

from lapins.booking import BookingError, cancel_rdv, cancellation_deadline, family_move_refusal
from lapins.infra.extensions import db
from lapins.models import Organisation, Rdv, RdvStatus, SmsReplyRound, Territory, Usager, utcnow
from lapins.models.rdvs import CANCELLED_STATUSES, CancellationChannel, rdv_usagers
from lapins.notifications.gsm import transliterate
from lapins.notifications.links import move_url
from lapins.notifications.sms_text import display_phone, format_when

logger = logging.getLogger(__name__)

CONFIRM_WORDS = frozenset({"OUI", "O", "OK", "CONFIRMER", "CONFIRME", "YES"})
CANCEL_WORDS = frozenset({"ANNULER", "ANNULE", "ANNULATION", "NON", "NO"})
MOVE_WORDS = frozenset({"CHANGER", "CHANGE", "CHANGEMENT", "DEPLACER", "MODIFIER", "REPORTER"})
AMBIGUOUS_WITHIN = timedelta(hours=72)
ROUND_LIFETIME = timedelta(hours=12)
MAX_LISTED = 3  # a numbered list of more would not fit in one SMS
UPCOMING_LIMIT = 10

HELP = ("Répondez OUI pour confirmer votre RDV, ANNULER pour l'annuler, CHANGER pour changer sa date, STOP pour ne "
        "plus recevoir de SMS.")
NOTHING_COMING = "Aucun RDV à venir pour ce numéro. Pour prendre RDV, appelez votre centre de PMI."


@dataclass(frozen=True)
class Reply:
    words: str
    number: int | None  # "ANNULER 2" → 2; "2" alone → words "" and number 2


def parse(normalized: str) -> Reply:
    """`normalized` is the text upper-cased without accents (webhooks.normalize_keyword)."""
    match = re.fullmatch(r"([A-Z ]*?)\s*(\d{1,2})?", normalized)
    if not match:
        return Reply(normalized, None)
    words, number = match.group(1).strip(), match.group(2)
    return Reply(words, int(number) if number else None)


def territories_reached(to: str, messaging_service_sid: str) -> list[int]:
    """The territories whose sender the family wrote to, among those taking replies."""
    conditions = [Territory.sms_sender == to] if to else []
    if messaging_service_sid:
        conditions.append(Territory.twilio_messaging_service_sid == messaging_service_sid)
    if not conditions:
        return []
    return list(db.session.scalars(select(Territory.id).where(Territory.sms_takes_replies.is_(True), or_(*conditions))))


def coming_rdvs(phone: str, territory_ids: list[int]) -> list[Rdv]:
    """Live rdvs still to come of the usagers with this number, or whose responsible adult (first or second) has it,
    earliest first."""
    responsible, second = aliased(Usager), aliased(Usager)
    reached = (
        select(rdv_usagers.c.rdv_id)
        .join(Usager, Usager.id == rdv_usagers.c.usager_id)
        .outerjoin(responsible, responsible.id == Usager.responsible_id)
        .outerjoin(second, second.id == Usager.second_responsible_id)
        .where(or_(Usager.phone == phone, responsible.phone == phone, second.phone == phone))
    )
    return list(db.session.scalars(
        select(Rdv)
        .join(Organisation, Organisation.id == Rdv.organisation_id)
        .where(Rdv.id.in_(reached), Organisation.territory_id.in_(territory_ids), Rdv.starts_at > utcnow(),
               Rdv.status.not_in(CANCELLED_STATUSES))
        .order_by(Rdv.starts_at, Rdv.id)
        .limit(UPCOMING_LIMIT)
    ))


def is_known(phone: str, territory_ids: list[int]) -> bool:
    """Whether a usager of these territories has this number (a responsible adult is a usager too)."""
    return db.session.scalar(
        select(Usager.id).where(Usager.phone == phone, Usager.territory_id.in_(territory_ids)).limit(1)) is not None


def answer(phone: str, territory_ids: list[int], reply: Reply) -> str | None:
    """Act on the family's reply and say what was done; None when the number has no rdv here."""
    coming = coming_rdvs(phone, territory_ids)
    open_round = _open_round(phone, territory_ids)
    if reply.number is not None and reply.words in CANCEL_WORDS | {""} and open_round is not None:
        return _cancel_numbered(open_round, reply.number, phone)
    if not coming:
        if reply.words in CONFIRM_WORDS | CANCEL_WORDS | MOVE_WORDS and is_known(phone, territory_ids):
            return NOTHING_COMING
        return None
    if reply.words.split(" ")[0] in CONFIRM_WORDS:  # "OUI", "Oui merci !"
        return _confirm(coming[0])
    if reply.words in MOVE_WORDS:
        return _move_link(coming[0])
    if reply.words in CANCEL_WORDS:
        close = [rdv for rdv in coming if rdv.starts_at - coming[0].starts_at <= AMBIGUOUS_WITHIN][:MAX_LISTED]
        if len(close) > 1:
            return _ask_which(close, phone)
        return _cancel(coming[0], phone)
    return _sms(HELP)


def _confirm(rdv: Rdv) -> str:
    rdv.confirmed_at = rdv.confirmed_at or utcnow()
    db.session.commit()
    return _sms(f"Merci, votre RDV du {_when(rdv)} est confirmé.")


def _cancel(rdv: Rdv, phone: str) -> str:
    if utcnow() >= cancellation_deadline(rdv):
        phone = _phone_of(rdv)
        call = f" : appelez le {phone}" if phone else " : appelez votre centre de PMI"
        return _sms(f"Trop tard pour annuler par SMS le RDV du {_when(rdv)}{call}.")
    # Locked first (PostgreSQL; SQLite holds its write lock since the webhook recorded this SMS): an agent cancelling
    # it at this moment waits for us or is seen here, so cancel_rdv does not roll back, which would also drop the
    # SMS's record (webhooks.act_once) for a moment.
    if db.session.scalar(select(Rdv.status).where(Rdv.id == rdv.id).with_for_update()) in CANCELLED_STATUSES:
        return _sms(f"Le RDV du {_when(rdv)} est déjà annulé.")
    rdv.link_actor_id = _guardian_writing(rdv, phone)  # the other guardian is told (notifications.outbox)
    try:
        cancel_rdv(actor=None, rdv=rdv, status=RdvStatus.EXCUSED, reason=None, via=CancellationChannel.SMS)
    except BookingError:
        db.session.rollback()
        return _sms(f"Le RDV du {_when(rdv)} est déjà annulé.")
    logger.info("Inbound SMS: rdv %s cancelled by the family", rdv.id)
    return _sms(f"Votre RDV du {_when(rdv)} est annulé. Merci de nous avoir prévenus.")


def _guardian_writing(rdv: Rdv, phone: str) -> int | None:
    """The guardian of a child with two whose number this is: the one who cancelled."""
    for child in rdv.usagers:
        if len(child.guardians) > 1:
            for guardian in child.guardians:
                if guardian.phone == phone:
                    return guardian.id
    return None


def _move_link(rdv: Rdv) -> str:
    if family_move_refusal(rdv, utcnow()):
        phone = _phone_of(rdv)
        call = f"appelez le {phone}" if phone else "appelez votre centre de PMI"
        return _sms(f"Le RDV du {_when(rdv)} n'est plus modifiable en ligne : {call}.")
    return _sms(f"Pour changer la date de votre RDV du {_when(rdv)} : {move_url(rdv.id)}")


def _ask_which(rdvs: list[Rdv], phone: str) -> str:
    territory_id = rdvs[0].organisation.territory_id
    db.session.add(SmsReplyRound(territory_id=territory_id, phone=phone, rdv_ids=",".join(str(rdv.id) for rdv in rdvs),
                                 expires_at=utcnow() + ROUND_LIFETIME))
    db.session.commit()
    listed = " ; ".join(f"{index}) {_when(rdv)}" for index, rdv in enumerate(rdvs, start=1))
    numbers = " ou ".join(f"ANNULER {index}" for index in range(1, len(rdvs) + 1))
    return _sms(f"Vous avez {len(rdvs)} RDV : {listed}. Lequel annuler ? Répondez {numbers}.")


def _cancel_numbered(round_: SmsReplyRound, number: int, phone: str) -> str:
    ids = round_.rdv_id_list
    if not 1 <= number <= len(ids):
        return _sms(f"Répondez {' ou '.join(f'ANNULER {index}' for index in range(1, len(ids) + 1))}.")
    rdv = db.session.get(Rdv, ids[number - 1])
    db.session.delete(round_)  # committed with the cancellation and the SMS's record, in one transaction
    if rdv is None or not rdv.is_live or rdv.starts_at <= utcnow():
        return _sms("Ce RDV n'est plus à venir : rien n'a été annulé.")
    return _cancel(rdv, phone)


def _open_round(phone: str, territory_ids: list[int]) -> SmsReplyRound | None:
    return db.session.scalar(
        select(SmsReplyRound)
        .where(SmsReplyRound.phone == phone, SmsReplyRound.territory_id.in_(territory_ids),
               SmsReplyRound.expires_at > utcnow())
        .order_by(SmsReplyRound.created_at.desc(), SmsReplyRound.id.desc())
        .limit(1))


def _when(rdv: Rdv) -> str:
    return format_when(rdv.starts_at.astimezone(rdv.organisation.territory.tz))


def _phone_of(rdv: Rdv) -> str | None:
    return display_phone(rdv.phone_to_call, "FR")


def _sms(text: str) -> str:
    """Answers are GSM-7, so each costs one segment (checked in the tests)."""
    return transliterate(text)
