"""Routes of the API from the table of operations: token, ids in the path, query and body checked, JSON errors."""
from __future__ import annotations

import json
from collections.abc import Callable

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from lapins import policies
from lapins.api import validation
from lapins.api.schemas import MAX_ID, OPERATIONS, Operation
from lapins.audit.actors import acting
from lapins.auth.limits import retry_after_seconds
from lapins.auth.tokens import agent_for
from lapins.infra.extensions import db
from lapins.models import Absence, Participation, PlageOuverture, Rdv, Usager
from lapins.models.audit import AuditChannel

MAX_BODY_BYTES = 64 * 1024
PATH_OBJECTS = {"rdv_id": Rdv, "usager_id": Usager, "plage_id": PlageOuverture, "absence_id": Absence,
                "session_id": Rdv, "participation_id": Participation}
VIEWS: dict[str, Callable] = {}

HTTP_MESSAGES = {
    400: ("bad_request", "La requête n'a pas pu être comprise."),
    401: ("unauthorized", "Jeton d'accès absent, inconnu ou révoqué. Envoyez « Authorization: Bearer <jeton> »."),
    403: ("forbidden", "Vous n'avez pas le droit de faire cette action."),
    404: ("not_found", "Objet introuvable."),
    405: ("method_not_allowed", "Cette méthode n'est pas possible sur cette adresse."),
    409: ("conflict", "Action refusée."),
    413: ("too_large", f"Le corps de la requête dépasse {MAX_BODY_BYTES // 1024} Ko."),
    415: ("unsupported_media_type", "Envoyez du JSON (Content-Type: application/json)."),
    422: ("invalid", "Certaines valeurs sont refusées : voyez le message de chaque champ."),
    429: ("too_many_requests", "Trop de requêtes avec ce jeton ou depuis cette adresse : réessayez après le délai "
                               "donné par l'en-tête Retry-After."),
}


class ApiError(Exception):
    def __init__(self, status: int, message: str | None = None, *, fields: dict | None = None,
                 code: str | None = None, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.code, default = HTTP_MESSAGES.get(status, HTTP_MESSAGES[400])
        self.code = code or self.code  # a refusal of its own kind names itself (e.g. collective_motif)
        self.message = message or default
        self.fields = fields
        self.extra = extra


def invalid(fields: dict[str, str]) -> ApiError:
    return ApiError(422, fields=fields)


def implements(operation_id: str):
    """Binds a view to its operation of the table; the view gets the agent, the ids, `query` and `body`."""
    def decorate(view: Callable) -> Callable:
        VIEWS[operation_id] = view
        return view
    return decorate


def register_operations(bp: Blueprint) -> None:
    declared = {operation.operation_id for operation in OPERATIONS}
    assert declared == set(VIEWS), f"operations without view or views without operation: {declared ^ set(VIEWS)}"
    for operation in OPERATIONS:
        assert all(name in PATH_OBJECTS for name in operation.path_parameters) and (
            bool(operation.path_parameters) == (operation.action is not None)), operation.operation_id
        rule = operation.path.replace("{", "<").replace("}", ">")
        handler = _handler(operation)
        handler.api_operation = True  # rate-limited per token and per address (lapins.auth.limits)
        bp.add_url_rule(rule, operation.operation_id, handler, methods=[operation.method])
    bp.register_error_handler(ApiError, _api_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _unexpected_error)


def _handler(operation: Operation) -> Callable:
    view = VIEWS[operation.operation_id]

    def handle(**path):
        agent = agent_for(request.headers.get("Authorization"))
        if agent is None:
            raise ApiError(401)
        ids = {name: _id(value) for name, value in path.items()}
        for name, object_id in ids.items():
            policies.authorize(agent, operation.action, db.session.get(PATH_OBJECTS[name], object_id))
        try:
            query = validation.query(operation.query, request.args)
            body = validation.body(operation.body, _json_body()) if operation.body is not None else None
        except validation.Invalid as refused:
            raise invalid(refused.fields) from None
        with acting(agent=agent, via=AuditChannel.API):
            payload, status = view(agent, query=query, body=body, **ids)
        if payload is None:
            return "", status
        return jsonify(payload), status

    handle.__name__ = operation.operation_id
    return handle


def _id(text: str) -> int:
    """An id in the path: anything but a positive integer of the database's range names nothing."""
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_ID:
        raise ApiError(404)
    return int(text)


def _json_body():
    request.max_content_length = MAX_BODY_BYTES
    data = request.get_data(cache=True)
    if not data.strip():
        raise ApiError(400, "Corps de requête JSON attendu.")
    if request.mimetype != "application/json":
        raise ApiError(415)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ApiError(400, "Le corps de la requête n'est pas du JSON valide.") from None


def _api_error(error: ApiError):
    db.session.rollback()
    body = {"error": error.code, "message": error.message} | error.extra
    if error.fields:
        body["fields"] = error.fields
    response = jsonify(body)
    response.status_code = error.status
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="lapins"'
    if error.status == 429:
        response.headers["Retry-After"] = str(retry_after_seconds())
    return response


def _http_error(error: HTTPException):
    status = error.code or 500
    if status >= 500:
        return _unexpected_error(error)
    return _api_error(ApiError(status if status in HTTP_MESSAGES else 400))


def _unexpected_error(error: Exception):
    db.session.rollback()
    current_app.logger.exception("unhandled API error")
    response = jsonify({"error": "server_error", "message": "Erreur inattendue : l'équipe technique a été prévenue."})
    response.status_code = 500
    return response


# --- Lists ---------------------------------------------------------------------------------------------------------


def page(statement, query: dict, render: Callable) -> dict:
    """One page of a scoped, ordered statement: {"items", "page", "per_page", "total"}."""
    total = db.session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    number, per_page = query["page"], query["per_page"]
    rows = db.session.scalars(statement.limit(per_page).offset((number - 1) * per_page)).unique().all()
    return {"items": [render(row) for row in rows], "page": number, "per_page": per_page, "total": total}
