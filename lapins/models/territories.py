"""Where services are held: territories (départements), organisations (PMI services) and lieux (centres)."""
from __future__ import annotations

import secrets
from datetime import datetime, time
from functools import cached_property
from zoneinfo import ZoneInfo

from sqlalchemy import Float, ForeignKey, String, Text, Time
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lapins.infra.extensions import db
from lapins.models.types import UTCDateTime

# The `holidays` package knows local public holidays for these départements; others use France's national list.
HOLIDAY_SUBDIVISIONS = {
    "57": "57", "67": "6AE", "68": "6AE",
    "971": "971", "972": "972", "973": "973", "974": "974", "976": "976",
}


def new_agenda_stamp() -> str:
    return secrets.token_hex(8)


def phone_to_call(lieu: Lieu | None, organisation: Organisation) -> str | None:
    """The number a family calls about an rdv: its lieu's, else its organisation's."""
    return (lieu.phone if lieu is not None else None) or organisation.phone


class TerritoryClock:
    """A territory's clock and holidays, from its `timezone` and `number`: for the model and for the rows of
    lapins.models.light_agent alike."""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def holiday_subdivision(self) -> str | None:
        return HOLIDAY_SUBDIVISIONS.get(self.number)


class Territory(TerritoryClock, db.Model):
    __tablename__ = "territories"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(3), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")
    # SMS sending: an alphanumeric sender ("PMI92", ≤ 11 characters, cannot take replies), an E.164 number, or a
    # Twilio Messaging Service that picks the number.
    sms_sender: Mapped[str | None] = mapped_column(String(20))
    twilio_messaging_service_sid: Mapped[str | None] = mapped_column(String(40))
    sms_takes_replies: Mapped[bool] = mapped_column(default=False)
    # The territory's own Twilio account, encrypted at rest (lapins.infra.crypto): when both are set its SMS leave from
    # that account and its webhooks are checked with its Auth Token; otherwise the deployment's (environment).
    twilio_account_sid_encrypted: Mapped[str | None] = mapped_column(Text)
    twilio_account_sid_saved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    twilio_auth_token_encrypted: Mapped[str | None] = mapped_column(Text)
    twilio_auth_token_saved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Its SMS operator ("twilio", "brevo"), None: the deployment's (SMS_BACKEND); and its own Brevo API key,
    # encrypted like the Twilio account (without one, BREVO_API_KEY's account sends).
    sms_operator: Mapped[str | None] = mapped_column(String(20))
    brevo_api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    brevo_api_key_saved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The wording of its SMS (lapins.notifications.sms_text.Wording): a sender label standing for the organisation's
    # name, and per kind of message a short sentence of its own, both already transliterated to GSM-7.
    sms_label: Mapped[str | None] = mapped_column(String(40))
    sms_note_created: Mapped[str | None] = mapped_column(String(100))
    sms_note_changed: Mapped[str | None] = mapped_column(String(100))
    sms_note_cancelled: Mapped[str | None] = mapped_column(String(100))
    sms_note_reminder: Mapped[str | None] = mapped_column(String(100))
    # What a missed rdv costs, in the territory's words: added to a reminder only when it still fits one segment.
    sms_cost_note: Mapped[str | None] = mapped_column(String(100))
    # Hours before the rdv, in local wall-clock time ("48" or "72,24"); a motif may override them. New territories
    # get J-3 and J-1 (lapins.notifications.timing says why); the database's default, "48", is the older releases'
    # and is kept for the rows they stored.
    reminder_offsets: Mapped[str] = mapped_column(String(40), default="72,24")
    # No SMS in these local hours: a reminder due then goes before they begin; another message waits for their end
    # (or goes before the start if the end is too late).
    quiet_hours_start: Mapped[time] = mapped_column(Time, default=time(20, 0))
    quiet_hours_end: Mapped[time] = mapped_column(Time, default=time(8, 30))
    # A family moving its rdv picks a slot of the same agent(s), or of any agent of the lieu.
    family_moves_any_agent: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    # Its agents sign in through the instance's OpenID Connect provider only (lapins.auth.oidc): their password is
    # refused. Without a provider configured, the password stays (nobody is locked out).
    oidc_required: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    # With replies taken: every reminder asks the family to reply OUI (as before), or, when off, only the last
    # reminder of families at risk (lapins.notifications.confirmation).
    sms_confirm_everyone: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    # The territory's no-show rate before Lapins (« taux de lapins », lapins.stats.headline), in hundredths of a
    # percent (1250: 12.50 %), and what it measured ("2025, ancien outil"): entered by its administrator.
    noshow_baseline_bp: Mapped[int | None] = mapped_column()
    noshow_baseline_label: Mapped[str | None] = mapped_column(String(80))
    # The built-in experiment (lapins.notifications.experiment): a second wording of the reminder's sentence, for the
    # families of arm B between the start and the end (none: not started; an end: stopped, its figures kept).
    experiment_note_b: Mapped[str | None] = mapped_column(String(100))
    experiment_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    experiment_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Online booking by families (issue 15), for the motifs and lieux that allow it: off stops it for the territory.
    online_booking: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    # Drawn anew, in the same transaction, by every change to what an agenda of the territory shows
    # (lapins.models.agenda_stamps): agenda feeds are cached on it. Random rather than counted, so that a database
    # recreated or restored never meets a cache filled from another one.
    agenda_stamp: Mapped[str] = mapped_column(String(16), default=lambda: new_agenda_stamp())

    organisations: Mapped[list[Organisation]] = relationship(back_populates="territory", order_by="Organisation.name")

    @property
    def has_twilio_credentials(self) -> bool:
        return bool(self.twilio_account_sid_encrypted and self.twilio_auth_token_encrypted)

    def sms_note(self, kind: str) -> str | None:
        """The territory's own sentence for SMS of this kind (created, changed, cancelled, reminder)."""
        if kind not in ("created", "changed", "cancelled", "reminder"):
            return None
        return getattr(self, f"sms_note_{kind}")

    def __repr__(self) -> str:
        return f"<Territory {self.number}>"


class Organisation(db.Model):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    territory_id: Mapped[int] = mapped_column(ForeignKey("territories.id"), index=True)
    name: Mapped[str] = mapped_column(String(160))
    phone: Mapped[str | None] = mapped_column(String(20))  # the number families call when no lieu is set

    territory: Mapped[Territory] = relationship(back_populates="organisations")
    lieux: Mapped[list[Lieu]] = relationship(back_populates="organisation", order_by="Lieu.name")

    @property
    def label_in_sms(self) -> str:
        """The name that opens its families' SMS: the territory's own label (territory settings), else its name."""
        return self.territory.sms_label or self.name

    def __repr__(self) -> str:
        return f"<Organisation {self.id}>"


class Lieu(db.Model):
    __tablename__ = "lieux"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(160))
    address: Mapped[str] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(20))
    # A closed lieu (a centre shut or moved) is offered for no new rdv and gives no free slot; its rdvs stay.
    active: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    # Families may book here online (issue 15) unless this is off; its position orders the lieux serving an address,
    # nearest first (WGS 84 degrees, both or neither).
    online_booking: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)

    organisation: Mapped[Organisation] = relationship(back_populates="lieux")

    @cached_property
    def territory(self) -> Territory:
        return self.organisation.territory

    def __repr__(self) -> str:
        return f"<Lieu {self.id}>"
