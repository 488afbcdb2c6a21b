"""The API's declarations: the JSON schemas of requests and responses and the table of operations.

The same table registers the routes (lapins.api.routing), validates what they receive (lapins.api.validation) and
writes the OpenAPI document and the docs page (lapins.api.openapi): the three cannot say different things.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lapins.api.validation import HOUR_PATTERN

MAX_ID = 2**31 - 1
PER_PAGE_MAX = 100

ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
NULLABLE_ID = ID | {"nullable": True}
IDS = {"type": "array", "items": ID, "minItems": 1, "maxItems": 10}
INSTANT = {"type": "string", "format": "date-time", "maxLength": 40, "example": "2026-01-05T09:30:00Z"}
NULLABLE_INSTANT = INSTANT | {"nullable": True}
LOCAL_INSTANT = {"type": "string", "maxLength": 40, "example": "2026-01-05T10:30:00+01:00",
                 "description": "La même heure, dans le fuseau du territoire."}
DAY = {"type": "string", "format": "date", "maxLength": 10, "example": "2026-01-05"}
HOUR = {"type": "string", "pattern": HOUR_PATTERN, "maxLength": 5, "example": "09:00",
        "description": "Heure locale du territoire, HH:MM."}
WEEKDAYS = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 6}, "maxItems": 7,
            "description": "Jours de la semaine : 0 = lundi … 6 = dimanche."}
TEXT = {"type": "string", "maxLength": 255}
RDV_STATUSES = ["unknown", "seen", "noshow", "excused", "revoked"]


def _string(max_length: int, *, nullable: bool = False, min_length: int = 0, **extra) -> dict:
    schema = {"type": "string", "maxLength": max_length} | extra
    if min_length:
        schema["minLength"] = min_length
    if nullable:
        schema["nullable"] = True
    return schema


def _object(properties: dict, required: list[str] | None = None, *, closed: bool = True) -> dict:
    schema = {"type": "object", "properties": properties, "required": required or []}
    if closed:
        schema["additionalProperties"] = False
    return schema


def page_of(item: dict) -> dict:
    return _object({"items": {"type": "array", "items": item}, "page": {"type": "integer"},
                    "per_page": {"type": "integer"}, "total": {"type": "integer"}},
                   ["items", "page", "per_page", "total"], closed=False)


# --- What the API answers -------------------------------------------------------------------------------------------

ERROR = _object({
    "error": {"type": "string", "description": "Code de l'erreur, stable (unauthorized, not_found, invalid…) ; "
                                                "collective_motif (422) : un motif collectif ne donne pas de "
                                                "rendez-vous individuel, mais des séances (POST /sessions)."},
    "message": {"type": "string", "description": "Message en français, à montrer tel quel."},
    "fields": {"type": "object", "additionalProperties": {"type": "string"},
               "description": "Un message par champ refusé."},
    "can_force": {"type": "boolean"},
    "session_full": {"type": "boolean", "description": "Vrai quand la séance est complète : la famille peut être "
                                                       "inscrite sur sa file d'attente "
                                                       "(POST /sessions/{session_id}/waitlist)."},
    "busy": {"type": "array", "description": "Séances refusées (409) parce qu'un agent est déjà pris : pour chaque "
                                             "date, l'agent et le rendez-vous qui la bloque.",
             "items": _object({"starts_at": INSTANT, "agent_id": ID, "busy_from": INSTANT, "busy_until": INSTANT},
                              ["starts_at", "agent_id", "busy_from", "busy_until"], closed=False)},
}, ["error", "message"], closed=False)

# What an rdv says of its capacity: a collective session (atelier) is an rdv with places; an individual rdv has none.
_SESSION_FIELDS = {
    "max_participants": {"type": "integer", "nullable": True,
                         "description": "Places offertes d'une séance collective ; null pour un rendez-vous individuel."},
    "places_taken": {"type": "integer", "description": "Places prises par les inscriptions en cours (0 hors séance)."},
    "title": {"type": "string", "nullable": True, "description": "Titre d'une séance collective."},
}

RDV = _object({
    "id": ID, "organisation_id": ID, "motif_id": ID, "lieu_id": NULLABLE_ID,
    "agent_ids": {"type": "array", "items": ID}, "usager_ids": {"type": "array", "items": ID},
    "starts_at": INSTANT, "ends_at": INSTANT, "starts_at_local": LOCAL_INSTANT, "ends_at_local": LOCAL_INSTANT,
    "timezone": {"type": "string"}, "duration_minutes": {"type": "integer"},
    "status": {"type": "string", "enum": RDV_STATUSES}, "status_label": {"type": "string"},
    "notes": {"type": "string", "nullable": True}, "booked_via": {"type": "string"},
    "created_at": INSTANT, "cancelled_at": NULLABLE_INSTANT,
    "cancelled_via": {"type": "string", "nullable": True}, "cancel_reason": {"type": "string", "nullable": True},
    "notify_only_id": NULLABLE_ID | {"description": "« Ne prévenir que … » : le seul responsable de l'enfant à qui "
                                                    "les messages de ce rdv sont envoyés ; null pour les deux."},
    "revision": {"type": "integer", "description": "Augmente à chaque déplacement ou modification : à renvoyer dans "
                                                   "un PATCH pour qu'il ne s'applique qu'à ce que vous avez lu."},
} | _SESSION_FIELDS, ["id", "organisation_id", "motif_id", "lieu_id", "agent_ids", "usager_ids", "starts_at", "ends_at",
                      "starts_at_local", "ends_at_local", "timezone", "duration_minutes", "status", "status_label",
                      "max_participants", "places_taken", "title"], closed=False)

PARTICIPATION_STATUSES = ["registered", "present", "absent", "excused"]
PARTICIPATION = _object({
    "id": ID, "session_id": ID, "organisation_id": ID,
    "usager_id": ID | {"description": "L'adulte responsable de la famille : c'est lui qui est prévenu."},
    "usager_ids": {"type": "array", "items": ID, "description": "Les personnes qui viennent (un parent, un bébé…)."},
    "places": {"type": "integer", "description": "Les places comptées : 1 par famille, ou 1 par personne, selon le "
                                                 "motif."},
    "status": {"type": "string", "enum": PARTICIPATION_STATUSES,
               "description": "registered : inscrit ; present, absent : présence notée ; excused : place annulée."},
    "status_label": {"type": "string"}, "booked_via": {"type": "string"}, "created_at": INSTANT,
    "cancelled_at": NULLABLE_INSTANT,
    "cancelled_by": {"type": "string", "nullable": True, "description": "Qui a annulé la place (agent, family…)."},
    "cancelled_via": {"type": "string", "nullable": True},
}, ["id", "session_id", "organisation_id", "usager_id", "usager_ids", "places", "status", "status_label",
    "created_at"], closed=False)

SESSION = _object(RDV["properties"] | {
    "places_held": {"type": "integer", "description": "Places proposées à des familles de la file d'attente, "
                                                      "en attente de leur réponse."},
    "places_left": {"type": "integer", "description": "Places qu'un agent peut encore donner : places offertes "
                                                      "moins prises et proposées."},
    "participations": {"type": "array", "items": PARTICIPATION,
                       "description": "Toutes les inscriptions, annulées comprises (statut excused)."},
}, RDV["required"] + ["places_held", "places_left", "participations"], closed=False)
SESSIONS_CREATED = _object({"items": {"type": "array", "items": SESSION,
                                       "description": "Les séances créées, de la plus tôt à la plus tard."}},
                           ["items"], closed=False)
WAITLIST_ENTRY = _object({
    "id": ID, "session_id": ID, "usager_id": ID, "organisation_id": ID,
    "status": {"type": "string", "description": "active : en attente d'une place."}, "created_at": INSTANT,
    "position": {"type": "integer", "nullable": True,
                 "description": "Son rang dans la file de la séance, à partir de 1 ; null une fois retirée."},
}, ["id", "session_id", "usager_id", "status", "created_at", "position"], closed=False)
SESSION_LISTED = _object({name: schema for name, schema in SESSION["properties"].items() if name != "participations"},
                         [name for name in SESSION["required"] if name != "participations"], closed=False)

USAGER = _object({
    "id": ID, "territory_id": ID, "organisation_ids": {"type": "array", "items": ID},
    "responsible_id": NULLABLE_ID,
    "second_responsible_id": NULLABLE_ID | {"description": "Le second responsable d'un enfant (parents séparés) : "
                                                           "il reçoit aussi les messages de ses rendez-vous."},
    "guardian_ids": {"type": "array", "items": ID, "description": "Les responsables de l'enfant (deux au plus), le "
                                                                  "premier d'abord ; vide pour un adulte."},
    "relative_ids": {"type": "array", "items": ID, "description": "Les enfants dont il est responsable, premier ou "
                                                                  "second."},
    "first_name": {"type": "string"}, "last_name": {"type": "string"},
    "birth_date": DAY | {"nullable": True}, "phone": {"type": "string", "nullable": True},
    "email": {"type": "string", "nullable": True}, "sms_consent": {"type": "boolean"},
    "email_consent": {"type": "boolean"}, "phone_undeliverable": {"type": "boolean"}, "created_at": INSTANT,
    "address_street": {"type": "string", "nullable": True}, "address_postcode": {"type": "string", "nullable": True},
    "address_commune": {"type": "string", "nullable": True}, "commune_insee": {"type": "string", "nullable": True},
    "address_access": {"type": "string", "nullable": True},
    "merged_from_id": ID | {"description": "Présent quand l'identifiant demandé est celui d'un dossier fusionné dans "
                                           "celui-ci : la réponse est le dossier gardé, dont `id` est le nouvel "
                                           "identifiant (le webhook `usager.merged` l'a annoncé)."},
}, ["id", "territory_id", "first_name", "last_name"], closed=False)

MOTIF = _object({
    "id": ID, "organisation_id": ID, "name": {"type": "string"}, "duration_minutes": {"type": "integer"},
    "location_type": {"type": "string", "enum": ["on_site", "phone", "home"]}, "active": {"type": "boolean"},
    "color": {"type": "string"},
    "discreet": {"type": "boolean", "description": "Jamais nommé dans les messages aux familles (« Rendez-vous PMI »)."},
    "notify": {"type": "boolean", "description": "Faux : motif sans notification, aucun SMS ni courriel."},
    "catalogue_id": NULLABLE_ID | {"description": "Le motif du catalogue du territoire dont il est adopté ou auquel il "
                                                 "est relié ; null pour un motif propre à l'organisation."},
}, ["id", "organisation_id", "name", "duration_minutes", "location_type", "active"], closed=False)

LIEU = _object({
    "id": ID, "organisation_id": ID, "name": {"type": "string"}, "address": {"type": "string"},
    "phone": {"type": "string", "nullable": True},
    "active": {"type": "boolean", "description": "Faux pour un lieu fermé : plus de rdv ni de créneau."},
}, ["id", "organisation_id", "name", "active"], closed=False)

AGENT = _object({
    "id": ID, "first_name": {"type": "string"}, "last_name": {"type": "string"}, "email": {"type": "string"},
    "organisation_ids": {"type": "array", "items": ID},
}, ["id", "first_name", "last_name"], closed=False)

_RECURRENCE_OUT = {
    "first_day": DAY, "last_day": DAY | {"nullable": True}, "start_time": HOUR, "end_time": HOUR,
    "weekdays": WEEKDAYS, "every_n_weeks": {"type": "integer"}, "timezone": {"type": "string"},
}
PLAGE_EXCEPTION = _object({
    "date": DAY, "removed": {"type": "boolean", "description": "Vrai : la plage n'ouvre pas ce jour-là."},
    "start_time": HOUR | {"nullable": True}, "end_time": HOUR | {"nullable": True},
}, ["date", "removed", "start_time", "end_time"], closed=False)
PLAGE = _object({"id": ID, "agent_id": ID, "organisation_id": ID, "lieu_id": NULLABLE_ID,
                 "motif_ids": {"type": "array", "items": ID}, "title": {"type": "string"},
                 "exceptions": {"type": "array", "items": PLAGE_EXCEPTION, "description": (
                     "Les dates retirées ou ouvertes à d'autres heures (« cette date seulement », depuis l'agenda), "
                     "en heures locales ; une date ouverte dans un autre lieu y est retirée et devient une plage "
                     "d'un jour dans ce lieu.")}} | _RECURRENCE_OUT,
                ["id", "agent_id", "organisation_id", "title", "first_day", "start_time", "end_time"], closed=False)
ABSENCE = _object({"id": ID, "agent_id": ID, "title": {"type": "string"}} | _RECURRENCE_OUT,
                  ["id", "agent_id", "title", "first_day", "start_time", "end_time"], closed=False)

SLOT = _object({
    "starts_at": INSTANT, "ends_at": INSTANT, "starts_at_local": LOCAL_INSTANT, "ends_at_local": LOCAL_INSTANT,
    "timezone": {"type": "string"}, "agent_id": ID, "lieu_id": NULLABLE_ID, "motif_id": ID, "plage_id": ID,
}, ["starts_at", "ends_at", "agent_id", "motif_id"], closed=False)
SLOTS = _object({"items": {"type": "array", "items": SLOT}}, ["items"], closed=False)

# --- What the API receives ------------------------------------------------------------------------------------------

NOTES = _string(2000, nullable=True, **{"x-multiline": True})
DURATION = {"type": "integer", "minimum": 5, "maximum": 720, "description": "En minutes ; par défaut, celle du motif."}

RDV_CREATE = _object({
    "motif_id": ID, "agent_ids": IDS, "usager_ids": IDS, "starts_at": INSTANT, "duration_minutes": DURATION,
    "lieu_id": NULLABLE_ID, "notes": NOTES,
}, ["motif_id", "agent_ids", "usager_ids", "starts_at"])
REVISION = {"type": "integer", "minimum": 0,
            "description": "La révision lue (champ revision) : si le rendez-vous a changé depuis, la requête est refusée "
                           "(409) et rien n'est modifié. Sans elle, la modification s'applique à l'état du moment."}
RDV_UPDATE = _object({
    "motif_id": ID, "agent_ids": IDS, "usager_ids": IDS, "starts_at": INSTANT, "duration_minutes": DURATION,
    "lieu_id": NULLABLE_ID, "notes": NOTES, "revision": REVISION,
})
RDV_CANCEL = _object({
    "status": {"type": "string", "enum": ["excused", "revoked"],
               "description": "excused : annulé par l'usager ; revoked : annulé par le service."},
    "reason": _string(255, nullable=True),
}, ["status"])

RDV_OUTCOME = _object({
    "status": {"type": "string", "enum": ["seen", "noshow", "unknown"],
               "description": "seen : l'usager est venu ; noshow : il n'est pas venu (l'un et l'autre une fois le rdv "
                              "commencé) ; unknown : à renseigner, pour reprendre une saisie ou rétablir un rdv "
                              "annulé (si son créneau est encore libre)."},
}, ["status"])

PARTICIPATION_CREATE = _object({
    "usager_ids": IDS | {"description": "Une famille à la fois : un adulte et ses proches (ou un proche seul)."},
}, ["usager_ids"])
CAPACITY = {"type": "integer", "minimum": 1, "maximum": 500, "description": "Le nombre de places."}
SESSION_CAPACITY = _object({
    "capacity": CAPACITY | {"description": "Le nombre de places ; jamais sous les places déjà prises ou proposées."},
}, ["capacity"])
SESSION_TITLE = _string(160, nullable=True, description="Titre de la séance (« Massage bébé »).")
SESSION_NOTES = NOTES | {"description": "Description de la séance, visible des agents seulement."}
SESSION_CREATE = _object({
    "motif_id": ID | {"description": "Un motif collectif (GET /api/v1/motifs)."},
    "agent_ids": IDS | {"description": "Les agents qui animent la séance : leur agenda est pris comme par un rdv."},
    "lieu_id": NULLABLE_ID, "starts_at": INSTANT | {"description": "Début de la (première) séance."},
    "duration_minutes": DURATION, "capacity": CAPACITY, "title": SESSION_TITLE, "notes": SESSION_NOTES,
    "count": {"type": "integer", "minimum": 1, "maximum": 52,
              "description": "Nombre de séances (1 par défaut) : une répétition, à la même heure locale, créée en "
                             "entier ou pas du tout."},
    "every_n_weeks": {"type": "integer", "minimum": 1, "maximum": 4,
                      "description": "Écart entre deux séances d'une répétition, en semaines (1 par défaut)."},
}, ["motif_id", "agent_ids", "starts_at", "capacity"])
SESSION_UPDATE = _object({
    "agent_ids": IDS, "lieu_id": NULLABLE_ID, "starts_at": INSTANT, "duration_minutes": DURATION,
    "title": SESSION_TITLE, "notes": SESSION_NOTES, "revision": REVISION,
})
SESSION_CANCEL = _object({
    "reason": _string(255, min_length=1, description="La raison, envoyée à chaque famille inscrite."),
}, ["reason"])
SESSION_WAIT = _object({
    "usager_id": ID | {"description": "La personne qui attend une place (l'adulte responsable est prévenu)."},
}, ["usager_id"])
SESSION_ATTENDANCE = _object({
    "present_ids": {"type": "array", "items": ID, "maxItems": 500,
                    "description": "Les inscriptions (identifiants de participation) venues ; les autres inscriptions "
                                   "en cours sont notées absentes, les places annulées gardent leur statut."},
}, ["present_ids"])

_USAGER_FIELDS = {
    "first_name": _string(80, min_length=1, **{"x-name": "person"}),
    "last_name": _string(80, min_length=1, **{"x-name": "person"}),
    "birth_date": DAY | {"nullable": True}, "phone": _string(30, nullable=True, example="06 12 34 56 78"),
    "email": _string(254, nullable=True), "sms_consent": {"type": "boolean"}, "email_consent": {"type": "boolean"},
    # The postal address, for home visits: the street and the commune go together (or both null).
    "address_street": _string(200, nullable=True, example="12 rue des Lilas"),
    "address_postcode": _string(5, nullable=True, example="93200"),
    "address_commune": _string(80, nullable=True, example="Saint-Denis"),
    "commune_insee": _string(5, nullable=True, example="93066", description="Code officiel géographique (INSEE)."),
    "address_access": _string(200, nullable=True, example="Bât. B, 3e étage, code 4521"),
}
USAGER_CREATE = _object(_USAGER_FIELDS | {
    "organisation_id": ID | {"description": "Obligatoire pour un agent de plusieurs organisations."},
    "responsible_id": ID | {"description": "Le responsable, pour un enfant rattaché à sa famille."},
}, ["first_name", "last_name"])
USAGER_UPDATE = _object(_USAGER_FIELDS)

_RECURRENCE_IN = {
    "first_day": DAY, "last_day": DAY | {"nullable": True}, "start_time": HOUR, "end_time": HOUR,
    "weekdays": WEEKDAYS, "every_n_weeks": {"type": "integer", "minimum": 1, "maximum": 4},
}
PLAGE_CREATE = _object({"agent_id": ID, "title": _string(160, min_length=1), "lieu_id": ID, "motif_ids": IDS}
                       | _RECURRENCE_IN, ["agent_id", "title", "lieu_id", "motif_ids", "first_day", "start_time",
                                          "end_time", "weekdays"])
ABSENCE_CREATE = _object({"agent_id": ID, "title": _string(160, min_length=1)} | _RECURRENCE_IN,
                         ["agent_id", "title", "first_day", "start_time", "end_time"])
# A change: the fields given replace the plage's or absence's own (`last_day: null` takes its last day away); the
# agent stays the same.
PLAGE_UPDATE = _object({name: schema for name, schema in PLAGE_CREATE["properties"].items() if name != "agent_id"})
ABSENCE_UPDATE = _object({name: schema for name, schema in ABSENCE_CREATE["properties"].items() if name != "agent_id"})

# --- Query strings --------------------------------------------------------------------------------------------------


def param(schema: dict, description: str, *, required: bool = False) -> dict:
    return {"schema": schema, "description": description, "required": required}


PAGINATION = {
    "page": param({"type": "integer", "minimum": 1, "maximum": 10000, "default": 1}, "Page, à partir de 1."),
    "per_page": param({"type": "integer", "minimum": 1, "maximum": PER_PAGE_MAX, "default": 50},
                      f"Éléments par page ({PER_PAGE_MAX} au plus)."),
}
RDV_FILTERS = PAGINATION | {
    "starts_after": param(INSTANT, "Rdvs commençant à cet instant ou après."),
    "starts_before": param(INSTANT, "Rdvs commençant avant cet instant."),
    "agent_id": param(ID, "Rdvs de cet agent."),
    "lieu_id": param(ID, "Rdvs dans ce lieu."),
    "usager_id": param(ID, "Rdvs de cet usager (d'un dossier fusionné : ceux du dossier gardé)."),
    "status": param({"type": "string", "enum": RDV_STATUSES}, "Statut du rdv."),
}
SESSION_FILTERS = PAGINATION | {
    "starts_after": param(INSTANT, "Séances commençant à cet instant ou après."),
    "starts_before": param(INSTANT, "Séances commençant avant cet instant."),
    "agent_id": param(ID, "Séances de cet agent."),
    "lieu_id": param(ID, "Séances dans ce lieu."),
    "motif_id": param(ID, "Séances de ce motif."),
    "usager_id": param(ID, "Séances où cet usager a une inscription en cours (ou notée présente ou absente)."),
    "status": param({"type": "string", "enum": RDV_STATUSES}, "Statut de la séance."),
    "with_places_left": param({"type": "boolean"}, "true : seulement les séances où il reste une place."),
}
PARTICIPATION_FILTERS = PAGINATION | {
    "status": param({"type": "string", "enum": PARTICIPATION_STATUSES}, "Statut de l'inscription."),
}
USAGER_FILTERS = PAGINATION | {
    "q": param(_string(100), "Début du nom ou du prénom, ou numéro de téléphone."),
}
AGENT_FILTER = PAGINATION | {"agent_id": param(ID, "Seulement cet agent.")}
SLOT_FILTERS = {
    "motif_id": param(ID, "Le motif du rendez-vous.", required=True),
    "lieu_id": param(ID, "Seulement dans ce lieu."),
    "agent_id": param(ID, "Seulement avec cet agent."),
    "from": param(DAY, "À partir de ce jour (heure locale du territoire) ; par défaut, maintenant."),
    "limit": param({"type": "integer", "minimum": 1, "maximum": 50, "default": 10}, "Nombre de créneaux (50 au plus)."),
}

# --- The operations -------------------------------------------------------------------------------------------------


# Answered by every operation, beyond the limits of lapins.auth.limits.
EVERY_OPERATION_ERRORS = (429,)


@dataclass(frozen=True)
class Operation:
    """One route of the API: what it takes and every status it may answer (errors included)."""

    operation_id: str
    method: str
    path: str  # below /api/v1, with {name} for an id in the path
    summary: str
    tag: str
    success: tuple[int, str, dict | None]  # (status, description, schema of the answer or None for no body)
    query: dict = field(default_factory=dict)
    body: dict | None = None
    errors: tuple[int, ...] = (401, 404, 422)
    # What the agent must be allowed to do (lapins.policies) to the object named in the path, checked before the
    # body is read: 404 outside its organisations, 403 without the right, whatever the body says.
    action: str | None = None

    @property
    def all_errors(self) -> tuple[int, ...]:
        """Its own errors and those every operation may answer."""
        return (*self.errors, *EVERY_OPERATION_ERRORS)

    @property
    def path_parameters(self) -> list[str]:
        import re

        return re.findall(r"\{(\w+)\}", self.path)


READ = (401, 404, 422)
WRITE = (400, 401, 403, 404, 413, 415, 422)
BOOKING = WRITE + (409,)

OPERATIONS: list[Operation] = [
    Operation("listRdvs", "GET", "/rdvs", "Lister les rendez-vous", "Rendez-vous",
              (200, "Une page de rendez-vous, du plus tôt au plus tard.", page_of(RDV)), query=RDV_FILTERS),
    Operation("createRdv", "POST", "/rdvs", "Créer un rendez-vous (mêmes règles que l'agenda)", "Rendez-vous",
              (201, "Le rendez-vous créé.", RDV), body=RDV_CREATE, errors=BOOKING),
    Operation("getRdv", "GET", "/rdvs/{rdv_id}", "Lire un rendez-vous", "Rendez-vous",
              (200, "Le rendez-vous.", RDV), errors=READ, action="view"),
    Operation("updateRdv", "PATCH", "/rdvs/{rdv_id}", "Déplacer ou modifier un rendez-vous", "Rendez-vous",
              (200, "Le rendez-vous modifié.", RDV), body=RDV_UPDATE, errors=BOOKING, action="edit"),
    Operation("cancelRdv", "POST", "/rdvs/{rdv_id}/cancel", "Annuler un rendez-vous", "Rendez-vous",
              (200, "Le rendez-vous annulé.", RDV), body=RDV_CANCEL, errors=BOOKING, action="edit"),
    Operation("setRdvOutcome", "POST", "/rdvs/{rdv_id}/outcome", "Dire si l'usager est venu", "Rendez-vous",
              (200, "Le rendez-vous, avec son statut.", RDV), body=RDV_OUTCOME, errors=BOOKING, action="edit"),
    Operation("listSessions", "GET", "/sessions", "Lister les séances collectives", "Séances collectives",
              (200, "Une page de séances, de la plus tôt à la plus tard, avec leurs places.", page_of(SESSION_LISTED)),
              query=SESSION_FILTERS),
    Operation("createSessions", "POST", "/sessions", "Créer une séance collective, ou une répétition (mêmes règles "
              "que l'agenda)", "Séances collectives",
              (201, "Les séances créées.", SESSIONS_CREATED), body=SESSION_CREATE, errors=BOOKING),
    Operation("getSession", "GET", "/sessions/{session_id}", "Lire une séance collective et ses inscriptions",
              "Séances collectives", (200, "La séance, ses places et toutes ses inscriptions.", SESSION),
              action="view"),
    Operation("updateSession", "PATCH", "/sessions/{session_id}", "Déplacer une séance ou modifier son titre",
              "Séances collectives", (200, "La séance modifiée ; chaque famille inscrite est prévenue une fois d'une "
                                           "nouvelle date ou d'un nouveau lieu.", SESSION),
              body=SESSION_UPDATE, errors=BOOKING, action="edit"),
    Operation("cancelSession", "POST", "/sessions/{session_id}/cancel", "Annuler une séance entière",
              "Séances collectives", (200, "La séance annulée ; chaque famille inscrite est prévenue une fois, avec "
                                           "la raison.", SESSION), body=SESSION_CANCEL, errors=BOOKING,
              action="edit"),
    Operation("joinSessionWaitlist", "POST", "/sessions/{session_id}/waitlist",
              "Mettre une famille sur la file d'attente d'une séance complète", "Séances collectives",
              (201, "L'attente : une place libérée lui sera proposée par SMS.", WAITLIST_ENTRY), body=SESSION_WAIT,
              errors=BOOKING, action="book"),
    Operation("withdrawFromSessionWaitlist", "POST", "/sessions/{session_id}/waitlist/withdraw",
              "Retirer une famille de la file d'attente d'une séance", "Séances collectives",
              (200, "L'attente retirée (status withdrawn) : aucune place ne lui sera plus proposée.", WAITLIST_ENTRY),
              body=SESSION_WAIT, errors=BOOKING, action="book"),
    Operation("listSessionWaitlist", "GET", "/sessions/{session_id}/waitlist",
              "Lister la file d'attente d'une séance", "Séances collectives",
              (200, "Les familles qui attendent une place, dans l'ordre où les places leur sont proposées.",
               page_of(WAITLIST_ENTRY)), query=PAGINATION, action="view"),
    Operation("setSessionCapacity", "POST", "/sessions/{session_id}/capacity", "Changer le nombre de places",
              "Séances collectives", (200, "La séance, avec ses places.", SESSION), body=SESSION_CAPACITY,
              errors=BOOKING, action="edit"),
    Operation("setSessionAttendance", "POST", "/sessions/{session_id}/attendance", "Noter les présences",
              "Séances collectives", (200, "La séance, avec le statut de chaque inscription.", SESSION),
              body=SESSION_ATTENDANCE, errors=BOOKING, action="edit"),
    Operation("listParticipations", "GET", "/sessions/{session_id}/participations",
              "Lister les inscriptions d'une séance", "Séances collectives",
              (200, "Une page d'inscriptions, dans leur ordre d'arrivée.", page_of(PARTICIPATION)),
              query=PARTICIPATION_FILTERS, action="view"),
    Operation("createParticipation", "POST", "/sessions/{session_id}/participations",
              "Inscrire une famille (mêmes règles que l'agenda)", "Séances collectives",
              (201, "L'inscription, avec ses rappels propres.", PARTICIPATION), body=PARTICIPATION_CREATE,
              errors=BOOKING, action="book"),
    Operation("getParticipation", "GET", "/participations/{participation_id}", "Lire une inscription",
              "Séances collectives", (200, "L'inscription.", PARTICIPATION), action="view"),
    Operation("cancelParticipation", "POST", "/participations/{participation_id}/cancel",
              "Annuler la place d'une famille (la séance continue)", "Séances collectives",
              (200, "L'inscription annulée ; sa place est de nouveau libre.", PARTICIPATION),
              errors=(401, 403, 404, 409), action="edit"),
    Operation("searchSlots", "GET", "/slots", "Chercher les premiers créneaux libres", "Créneaux",
              (200, "Les premiers créneaux libres, dans l'ordre.", SLOTS), query=SLOT_FILTERS),
    Operation("listUsagers", "GET", "/usagers", "Lister ou rechercher des usagers", "Usagers",
              (200, "Une page d'usagers.", page_of(USAGER)), query=USAGER_FILTERS),
    Operation("createUsager", "POST", "/usagers", "Créer un usager", "Usagers",
              (201, "L'usager créé.", USAGER), body=USAGER_CREATE, errors=WRITE),
    Operation("getUsager", "GET", "/usagers/{usager_id}", "Lire un usager", "Usagers",
              (200, "L'usager ; pour un dossier fusionné, le dossier gardé, avec `merged_from_id`.", USAGER),
              action="view"),
    Operation("updateUsager", "PATCH", "/usagers/{usager_id}", "Modifier un usager", "Usagers",
              (200, "L'usager modifié.", USAGER), body=USAGER_UPDATE, errors=WRITE, action="edit"),
    Operation("listMotifs", "GET", "/motifs", "Lister les motifs", "Référentiels",
              (200, "Une page de motifs.", page_of(MOTIF)), query=PAGINATION),
    Operation("listLieux", "GET", "/lieux", "Lister les lieux", "Référentiels",
              (200, "Une page de lieux.", page_of(LIEU)), query=PAGINATION),
    Operation("listAgents", "GET", "/agents", "Lister les agents", "Référentiels",
              (200, "Une page d'agents actifs.", page_of(AGENT)), query=PAGINATION),
    Operation("listPlages", "GET", "/plages", "Lister les plages d'ouverture", "Horaires",
              (200, "Une page de plages d'ouverture.", page_of(PLAGE)), query=AGENT_FILTER),
    Operation("createPlage", "POST", "/plages", "Créer une plage d'ouverture", "Horaires",
              (201, "La plage créée.", PLAGE), body=PLAGE_CREATE, errors=BOOKING),
    Operation("updatePlage", "PATCH", "/plages/{plage_id}", "Modifier une plage d'ouverture", "Horaires",
              (200, "La plage modifiée.", PLAGE), body=PLAGE_UPDATE, errors=BOOKING, action="manage_schedule"),
    Operation("deletePlage", "DELETE", "/plages/{plage_id}", "Supprimer une plage d'ouverture", "Horaires",
              (204, "La plage est supprimée.", None), errors=(401, 403, 404), action="manage_schedule"),
    Operation("listAbsences", "GET", "/absences", "Lister les absences", "Horaires",
              (200, "Une page d'absences.", page_of(ABSENCE)), query=AGENT_FILTER),
    Operation("createAbsence", "POST", "/absences", "Créer une absence", "Horaires",
              (201, "L'absence créée.", ABSENCE), body=ABSENCE_CREATE, errors=WRITE),
    Operation("updateAbsence", "PATCH", "/absences/{absence_id}", "Modifier une absence", "Horaires",
              (200, "L'absence modifiée.", ABSENCE), body=ABSENCE_UPDATE, errors=WRITE, action="manage_schedule"),
    Operation("deleteAbsence", "DELETE", "/absences/{absence_id}", "Supprimer une absence", "Horaires",
              (204, "L'absence est supprimée.", None), errors=(401, 403, 404), action="manage_schedule"),
]

ERROR_DESCRIPTIONS = {
    400: "Requête mal formée (JSON illisible).",
    401: "Jeton absent, inconnu ou révoqué, ou agent désactivé.",
    403: "Objet visible, mais action non permise à cet agent.",
    404: "Objet introuvable, ou hors des organisations de l'agent.",
    409: "Refusé par les règles (créneau déjà pris, hors des plages d'ouverture, chevauchement, séance complète…).",
    413: "Corps de requête trop volumineux.",
    415: "Le corps n'est pas envoyé en JSON (Content-Type: application/json).",
    422: "Valeurs refusées : un message par champ.",
    429: "Trop de requêtes, par jeton ou par adresse (API_LIMITS_PER_TOKEN, API_LIMITS_PER_IP) : réessayer après "
         "l'en-tête Retry-After.",
}
