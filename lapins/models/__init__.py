"""The domain model: every table of Lapins, importable from here."""
from lapins.models.agents import Agent, AgentRole, Role
from lapins.models.api_tokens import ApiToken  # noqa: F401
from lapins.models.messages import Channel, Message, MessageKind, MessageStatus
from lapins.models.identities import AgentIdentity, OidcJitRule  # noqa: F401
from lapins.models.exports import Export, ExportKind, ExportStatus  # noqa: F401
from lapins.models.motifs import LocationType, Motif, MotifCatalogueEntry
from lapins.models.plages import Absence, PlageException, PlageOuverture
from lapins.models.rdvs import Participation, ParticipationStatus, Rdv, RdvAgent, RdvStatus
from lapins.models.sectors import Sector, SectorZone
from lapins.models.sms_replies import SmsReplyRound
from lapins.models.system import Heartbeat
from lapins.models.delivery_health import ChannelState  # noqa: F401
from lapins.models.territories import Lieu, Organisation, Territory
from lapins.models.territory_admins import TerritoryAdmin  # noqa: F401
from lapins.models.types import utcnow
from lapins.models.usagers import Usager
from lapins.models.verifications import PhoneVerification  # noqa: F401
from lapins.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery  # noqa: F401
from lapins.models.waitlist import EntrySource, EntryStatus, OfferStatus, SlotOffer, SlotStatus, WaitlistEntry, WaitlistSlot
from lapins.models import agenda_stamps  # noqa: F401,I001  (its listeners draw new agenda stamps on every change)
from lapins.models.audit import AuditEvent  # noqa: F401,I001  (its module registers the audit-trail listeners)
from lapins.models.calendars import BusyBlock, CalendarFeed, CaldavAccount, CaldavPush, PushStatus  # noqa: F401,I001

__all__ = [
    "Absence", "Agent", "AgentRole", "Channel", "Heartbeat", "Message", "MessageKind", "MessageStatus", "Lieu", "LocationType", "Motif", "MotifCatalogueEntry", "Organisation", "PlageException", "PlageOuverture",
    "Participation", "ParticipationStatus", "Rdv", "RdvAgent", "RdvStatus", "Role", "Sector", "SectorZone", "SmsReplyRound", "Territory", "Usager", "utcnow",
]
