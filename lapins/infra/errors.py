"""DSFR error pages: nothing a visitor does ends on a bare server error.

The agenda's JSON API (`/agenda/api/…`, read by agenda.js) answers its errors in JSON, with the same French messages;
its views answer their own (lapins.agenda.calendar.json_api), these handlers the rest: an address that matches no
route, an unexpected error. The public API (/api/v1) has handlers of its own (lapins.api.routing).
"""
from flask import Flask, has_request_context, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from lapins.infra.extensions import db
from lapins.infra.logs import safe_traceback

MESSAGES = {
    400: ("Requête invalide", "La requête envoyée n'a pas pu être comprise."),
    403: ("Accès refusé", "Vous n'avez pas les droits nécessaires pour accéder à cette page."),
    404: ("Page non trouvée", "La page que vous cherchez est introuvable. Vérifiez l'adresse ou revenez à l'accueil."),
    405: ("Méthode non autorisée", "Cette action n'est pas possible sur cette page."),
    413: ("Envoi trop volumineux", "Les données envoyées sont trop volumineuses."),
    500: ("Erreur inattendue", "Désolé, le service rencontre un problème. L'équipe technique a été prévenue."),
}


AGENDA_API = "/agenda/api/"


def render_error(code: int, message: str | None = None):
    title, default = MESSAGES.get(code, MESSAGES[500] if code >= 500 else MESSAGES[400])
    if has_request_context() and request.path.startswith(AGENDA_API):
        return jsonify({"error": message or default}), code
    return render_template("errors/error.html", code=code, title=title, message=message or default), code


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_error(400, "Le formulaire a expiré ou n'est pas valide. Rechargez la page et recommencez.")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return render_error(error.code or 500)

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        db.session.rollback()
        app.logger.error("unhandled error\n%s", safe_traceback(error))
        return render_error(500)
