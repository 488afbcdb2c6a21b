"""What the territory settings page stores, and the sample SMS its wording is previewed and checked on."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select

from lapins import policies
from lapins.infra import crypto
from lapins.infra.extensions import db
from lapins.models import Lieu, Motif, Organisation, Role, Territory, utcnow
from lapins.notifications import links, providers, sms_text
from lapins.notifications.backends import TransientError
from lapins.notifications.brevo import BrevoSmsBackend
from lapins.notifications.gsm import is_gsm7, segments, septets, transliterate
from lapins.locale.phones import region_for

KIND_LABELS = {
    "created": "Confirmation",
    "changed": "Déplacement",
    "cancelled": "Annulation",
    "reminder": "Rappel",
}
# Each stored secret and its columns' prefix on territories (`<prefix>_encrypted`, `<prefix>_saved_at`).
SECRET_COLUMNS = {"account_sid": "twilio_account_sid", "auth_token": "twilio_auth_token",
                  "brevo_api_key": "brevo_api_key"}
FALLBACK_LINK = "https://rdv.departement.fr/r/fffff-AbC12x9Kf0"


# --- Settings -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """The values of the settings form, each already checked (lapins.onboarding.territory's checks)."""

    timezone: str
    sms_sender: str | None
    takes_replies: bool
    messaging_service_sid: str | None
    reminder_offsets: str
    quiet_hours_start: time
    quiet_hours_end: time
    moves_any_agent: bool
    confirm_everyone: bool = True


def administered_territories(actor) -> list[Territory]:
    """The territories whose settings the actor may change, by number."""
    candidates = set(actor.administered_territory_ids) | {
        role.organisation.territory_id for role in actor.roles if role.role == Role.ADMIN}
    territories = db.session.scalars(select(Territory).where(Territory.id.in_(candidates)).order_by(Territory.number))
    return [territory for territory in territories if policies.can(actor, "administer", territory)]


def save_settings(territory: Territory, settings: Settings) -> bool:
    """Store the settings; True when the time zone changed (the page then warns about the rdvs' local times)."""
    moved = territory.timezone != settings.timezone
    territory.timezone = settings.timezone
    territory.sms_sender = settings.sms_sender
    territory.sms_takes_replies = settings.takes_replies
    territory.twilio_messaging_service_sid = settings.messaging_service_sid
    territory.reminder_offsets = settings.reminder_offsets
    territory.quiet_hours_start, territory.quiet_hours_end = settings.quiet_hours_start, settings.quiet_hours_end
    territory.family_moves_any_agent = settings.moves_any_agent
    territory.sms_confirm_everyone = settings.confirm_everyone
    db.session.commit()
    return moved


# --- Twilio credentials -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredSecret:
    """What the page may say of a stored credential: when it was saved and how it ends, never the value."""

    saved_at: datetime | None
    ending: str | None  # the last 4 characters, or None when it cannot be decrypted (a key changed)

    @property
    def is_set(self) -> bool:
        return self.saved_at is not None


def stored_secrets(territory: Territory) -> dict[str, StoredSecret | None]:
    """For each credential: None when it is not set."""
    found: dict[str, StoredSecret | None] = {}
    for name, prefix in SECRET_COLUMNS.items():
        token = getattr(territory, f"{prefix}_encrypted")
        if not token:
            found[name] = None
            continue
        try:
            ending = crypto.decrypt(token)[-4:]
        except crypto.InvalidToken:
            ending = None
        found[name] = StoredSecret(saved_at=getattr(territory, f"{prefix}_saved_at"), ending=ending)
    return found


def save_credentials(territory: Territory, *, account_sid: str | None, auth_token: str | None,
                     delete_account_sid: bool, delete_auth_token: bool) -> None:
    """A given value replaces the stored one (encrypted); a blank one keeps it; `delete_*` removes it. The caller
    has checked that both end up set, or neither."""
    now = utcnow()
    for name, value, delete in (("account_sid", account_sid, delete_account_sid),
                                ("auth_token", auth_token, delete_auth_token)):
        if delete:
            setattr(territory, f"twilio_{name}_encrypted", None)
            setattr(territory, f"twilio_{name}_saved_at", None)
        elif value:
            setattr(territory, f"twilio_{name}_encrypted", crypto.encrypt(value))
            setattr(territory, f"twilio_{name}_saved_at", now)
    db.session.commit()


# --- SMS operator -------------------------------------------------------------------------------------------------

def chosen_operator(territory: Territory) -> str:
    """The operator the territory's SMS go through when sent for real: its choice, else the deployment's (the
    console of a development machine counts as none: then the choice alone is judged)."""
    if territory.sms_operator in providers.OPERATORS:
        return territory.sms_operator
    return current_app.config["SMS_BACKEND"]


def brevo_key_problem(api_key: str) -> str | None:
    """Asks Brevo whether it knows this API key (its account's page, which also tells the SMS credits left): a
    French reason when it does not or cannot answer, None when the key works."""
    backend = BrevoSmsBackend.for_key(api_key, current_app.config)
    try:
        backend.balance()
    except TransientError as error:
        if error.code == "credentials":
            return ("Brevo refuse cette clé API : vérifiez-la (compte Brevo, « SMTP & API », « Clés API ») et les "
                    "adresses IP autorisées du compte. Rien n'a été enregistré.")
        return ("Brevo n'a pas pu vérifier la clé API (service injoignable ou réponse illisible) : réessayez dans "
                "quelques minutes. Rien n'a été enregistré.")
    finally:
        backend.close()
    return None


def save_operator(territory: Territory, *, operator: str | None, brevo_api_key: str | None,
                  delete_brevo_api_key: bool) -> None:
    """The operator (None: the deployment's) and the Brevo API key: a given one replaces the stored one
    (encrypted), a blank one keeps it, `delete_brevo_api_key` removes it. Checked by the form beforehand."""
    territory.sms_operator = operator
    if delete_brevo_api_key:
        territory.brevo_api_key_encrypted = territory.brevo_api_key_saved_at = None
    elif brevo_api_key:
        territory.brevo_api_key_encrypted = crypto.encrypt(brevo_api_key)
        territory.brevo_api_key_saved_at = utcnow()
    db.session.commit()


# --- Wording: the sender label and a sentence per kind, previewed on sample SMS -----------------------------------

@dataclass(frozen=True)
class Sample:
    """An ordinary but demanding rdv, to try a wording on."""

    title: str
    timezone: str
    location_type: sms_text.LocationType
    motif: str
    region: str = "FR"
    lieu_name: str | None = None
    lieu_address: str | None = None
    phone: str | None = None
    person: str | None = None


# Not the worst case (compose always fits: see sms_text), but rdvs as the PMI services write them at their longest
# ordinary: a sentence accepted on these appears in the SMS of most rdvs; on a longer one it gives way to the facts.
SAMPLES = (
    Sample(title="RDV sur place, nom de lieu long", timezone="Europe/Paris", location_type="on_site",
           motif="Consultation nourrisson", lieu_name="Maison des solidarités Jean-Baptiste Clément",
           lieu_address="3 rue Hoche, 92000 Nanterre", phone="01 41 37 10 00", person="Léa"),
    Sample(title="RDV téléphonique", timezone="Europe/Paris", location_type="phone",
           motif="Entretien prénatal précoce", phone="01 41 37 10 00"),
    Sample(title="Outre-mer (La Réunion)", timezone="Indian/Reunion", location_type="on_site", region="RE",
           motif="Vaccinations", lieu_name="PMI de Saint-Pierre", lieu_address="12 rue des Bons Enfants",
           phone="0262 12 34 56", person="Maïwenn"),
)
SAMPLE_WALL_TIME = datetime(2026, 11, 24, 14, 5)  # a Tuesday


@dataclass(frozen=True)
class PreviewText:
    title: str
    text: str
    septets: int
    segments: int
    encoding: str  # "GSM-7" or "UCS-2"
    note_kept: bool


@dataclass(frozen=True)
class Typed:
    """What becomes of a typed value in an SMS: its encoding as typed, and the form it is sent in."""

    encoding: str
    sent_as: str
    changed: bool


def sample_organisation(territory: Territory) -> str:
    """The longest organisation name of the territory: the wording must also fit its SMS."""
    name = db.session.scalar(select(Organisation.name).where(Organisation.territory_id == territory.id)
                             .order_by(func.length(Organisation.name).desc(), Organisation.id).limit(1))
    return name or f"PMI {territory.name}"


def sample_link() -> str:
    link = links.family_url(0xFFFFFF)  # the rdv ids of years to come: the longest link families will get
    return link if is_gsm7(link) and septets(link) <= sms_text.MAX_LINK_SEPTETS else FALLBACK_LINK


def sample_facts(territory: Territory, sample: Sample, kind: str, *, label: str | None, note: str | None,
                 link: str, organisation: str) -> sms_text.SmsFacts:
    return sms_text.SmsFacts(
        kind=kind, starts_at_local=SAMPLE_WALL_TIME.replace(tzinfo=ZoneInfo(sample.timezone)), motif=sample.motif,
        location_type=sample.location_type, link=link, organisation=label or organisation, region=sample.region,
        lieu_name=sample.lieu_name, lieu_address=sample.lieu_address, phone=sample.phone, person=sample.person,
        two_way=territory.sms_takes_replies, note=note)


def preview(territory: Territory, kind: str, *, label: str | None, note: str | None) -> list[PreviewText]:
    """The SMS of each sample for this kind, composed by the real sms_text.compose with this wording."""
    link, organisation = sample_link(), sample_organisation(territory)
    texts = []
    for sample in SAMPLES:
        facts = sample_facts(territory, sample, kind, label=label, note=note, link=link, organisation=organisation)
        text = sms_text.compose(facts)
        texts.append(PreviewText(title=sample.title, text=text, septets=septets(text), segments=segments(text),
                                 encoding="GSM-7" if is_gsm7(text) else "UCS-2",
                                 note_kept=sms_text.note_kept(facts)))
    return texts


def note_too_long_for(territory: Territory, kind: str, *, label: str | None, note: str | None) -> str | None:
    """The title of the first sample whose SMS this sentence would not fit in (it would be dropped), or None."""
    if not note:
        return None
    link, organisation = sample_link(), sample_organisation(territory)
    for sample in SAMPLES:
        facts = sample_facts(territory, sample, kind, label=label, note=note, link=link, organisation=organisation)
        if not sms_text.note_kept(facts):
            return sample.title
    return None


def note_room(territory: Territory, kind: str, *, label: str | None) -> int:
    """The longest sentence (in septets, its stop included) that every sample SMS of this kind keeps, 0 if none."""
    link, organisation = sample_link(), sample_organisation(territory)

    def kept(length: int) -> bool:
        note = "x" * (length - 1) + "."
        return all(sms_text.note_kept(sample_facts(territory, sample, kind, label=label, note=note, link=link,
                                                   organisation=organisation)) for sample in SAMPLES)

    low, high = 0, sms_text.MAX_NOTE_SEPTETS  # kept(low) holds (0: no sentence); find the largest that does
    while low < high:
        middle = (low + high + 1) // 2
        if kept(middle):
            low = middle
        else:
            high = middle - 1
    return low


def typed(value: str | None) -> Typed | None:
    """How a value typed in a wording field travels: GSM-7 as typed, or UCS-2 until it is transliterated."""
    text = " ".join(unicodedata.normalize("NFC", value or "").split())
    if not text:
        return None
    sent_as = transliterate(text)
    return Typed(encoding="GSM-7" if is_gsm7(text) else "UCS-2", sent_as=sent_as, changed=sent_as != text)


def save_wording(territory: Territory, *, label: str | None, notes: dict[str, str | None]) -> None:
    territory.sms_label = label
    for kind in sms_text.KINDS:
        setattr(territory, f"sms_note_{kind}", notes.get(kind))
    db.session.commit()



# --- The cost sentence: a reminder's last part, there only when the reminder still fits one SMS ------------------

COST_EXAMPLE = "Un RDV manqué, c'est une place perdue pour une autre famille."
# A first name as long as many the services write (a child's, in the reminder sent to the parent).
LONG_FIRST_NAME = "Marie-Christine"


@dataclass(frozen=True)
class CostPreview:
    """The territory's longest real reminder with a cost sentence, and the room that sentence has."""

    motif: str
    lieu: str | None
    text: str
    septets: int
    segments: int
    kept: bool
    room: int  # the longest sentence that the shortest reminder of the territory keeps (septets, stop included)


def longest_reminder_sample(territory: Territory, organisation_ids: set[int]) -> Sample:
    """The territory's own longest names, among these organisations (those the administrator may read): its longest
    active motif, its lieu of longest name and address."""
    in_territory = (Organisation.territory_id == territory.id) & Organisation.id.in_(organisation_ids)
    motif = db.session.scalar(
        select(Motif.name).join(Organisation, Organisation.id == Motif.organisation_id)
        .where(in_territory, Motif.active.is_(True))
        .order_by(func.length(Motif.name).desc(), Motif.id).limit(1))
    lieu = db.session.execute(
        select(Lieu.name, Lieu.address, Lieu.phone, Organisation.phone)
        .join(Organisation, Organisation.id == Lieu.organisation_id)
        .where(in_territory, Lieu.active.is_(True))
        .order_by((func.length(Lieu.name) + func.length(Lieu.address)).desc(), Lieu.id).limit(1)).first()
    fallback = SAMPLES[0]
    return Sample(title="Votre rappel le plus long", timezone=territory.timezone, location_type="on_site",
                  motif=motif or fallback.motif, region=region_for(territory.number),
                  lieu_name=lieu.name if lieu else fallback.lieu_name,
                  lieu_address=lieu.address if lieu else fallback.lieu_address,
                  phone=(lieu.phone or lieu[3]) if lieu else fallback.phone, person=LONG_FIRST_NAME)


def _cost_facts(territory: Territory, sample: Sample, cost: str | None, *, two_way: bool) -> sms_text.SmsFacts:
    return sms_text.SmsFacts(
        kind="reminder", starts_at_local=SAMPLE_WALL_TIME.replace(tzinfo=ZoneInfo(sample.timezone)),
        motif=sample.motif, location_type=sample.location_type, link=sample_link(),
        organisation=territory.sms_label or sample_organisation(territory), region=sample.region,
        lieu_name=sample.lieu_name, lieu_address=sample.lieu_address, phone=sample.phone, person=sample.person,
        two_way=two_way, note=territory.sms_note("reminder"), cost=cost)


def _shortest_reminder(territory: Territory) -> Sample:
    """The most room a reminder can leave: no first name, motif, place or phone (each may be missing or dropped)."""
    return Sample(title="Le rappel le plus court", timezone=territory.timezone, location_type="on_site", motif="",
                  region=region_for(territory.number))


def cost_room(territory: Territory) -> int:
    """The longest cost sentence (septets, stop included) that the shortest reminder of the territory keeps."""
    shortest = _shortest_reminder(territory)

    def kept(length: int) -> bool:
        return sms_text.cost_kept(_cost_facts(territory, shortest, "x" * (length - 1) + ".", two_way=False))

    low, high = 0, sms_text.MAX_NOTE_SEPTETS
    while low < high:
        middle = (low + high + 1) // 2
        if kept(middle):
            low = middle
        else:
            high = middle - 1
    return low


def cost_never_fits(territory: Territory, cost: str | None) -> bool:
    """Whether no reminder of the territory, not even its shortest, would ever carry this sentence."""
    if not cost:
        return False
    return not sms_text.cost_kept(_cost_facts(territory, _shortest_reminder(territory), cost, two_way=False))


def cost_preview(territory: Territory, cost: str | None, organisation_ids: set[int]) -> CostPreview:
    """The longest real reminder of these organisations with this sentence, as sms_text.compose writes it."""
    sample = longest_reminder_sample(territory, organisation_ids)
    facts = _cost_facts(territory, sample, cost, two_way=territory.sms_takes_replies)
    text = sms_text.compose(facts)
    return CostPreview(motif=sample.motif, lieu=sample.lieu_name, text=text, septets=septets(text),
                       segments=segments(text), kept=sms_text.cost_kept(facts), room=cost_room(territory))


def save_cost_note(territory: Territory, cost: str | None) -> None:
    territory.sms_cost_note = cost
    db.session.commit()


def save_baseline(territory: Territory, rate_bp: int | None, label: str | None) -> None:
    """The no-show rate before Lapins, in hundredths of a percent; its label only goes with a rate."""
    territory.noshow_baseline_bp = rate_bp
    territory.noshow_baseline_label = label if rate_bp is not None else None
    db.session.commit()


def save_experiment(territory: Territory, *, running: bool, note_b: str | None) -> str:
    """Start, go on with or stop the experiment; says which, for the page's message."""
    territory.experiment_note_b = note_b
    was_running = territory.experiment_started_at is not None and territory.experiment_ended_at is None
    if running and not was_running:  # a new experiment: a new draw, figures from now
        territory.experiment_started_at, territory.experiment_ended_at = utcnow(), None
        outcome = "started"
    elif not running and was_running:
        territory.experiment_ended_at = utcnow()
        outcome = "stopped"
    else:
        outcome = "kept"
    db.session.commit()
    return outcome
