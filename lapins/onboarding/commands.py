"""Command-line tools: `flask --app lapins seed ...`, `flask --app lapins territory create ...`."""
from __future__ import annotations

import click
from flask import Flask

from lapins.auth import accounts, identities
from lapins.infra.extensions import db
from lapins.models import Role, Territory
from lapins.onboarding import seeding
from lapins.onboarding import territory as onboarding
from lapins.onboarding.territory import OnboardingError


def register(app: Flask) -> None:
    app.cli.add_command(seed)
    app.cli.add_command(territory)


@click.group("territory")
def territory() -> None:
    """Les territoires (départements) servis par cette installation."""


@territory.command("create")
@click.option("--number", required=True, help="Numéro du département : 01 à 95, 2A, 2B, 971 à 976.")
@click.option("--name", required=True, help="Nom du département, par exemple « Nord ».")
@click.option("--timezone", "timezone_name", required=True,
              help="Fuseau horaire IANA : Europe/Paris, Indian/Reunion, America/Guadeloupe…")
@click.option("--admin-email", required=True, help="Adresse du premier administrateur, qui recevra l'invitation.")
@click.option("--organisation", default=None, help="Nom du premier service (par défaut « PMI <nom> »).")
@click.option("--admin-first-name", default=None)
@click.option("--admin-last-name", default=None)
def create_territory(number: str, name: str, timezone_name: str, admin_email: str, organisation: str | None,
                     admin_first_name: str | None, admin_last_name: str | None) -> None:
    """Crée un département, son premier service et son administrateur, et invite celui-ci par courriel."""

    try:
        admin = onboarding.create_territory(number=number, name=name, timezone=timezone_name, admin_email=admin_email,
                       organisation_name=organisation, admin_first_name=admin_first_name,
                       admin_last_name=admin_last_name)
    except OnboardingError as error:
        raise click.ClickException(str(error)) from None
    territory = admin.roles[0].organisation.territory
    click.echo(f"Département {territory.number} — {territory.name} créé ({territory.timezone}), "
               f"service « {admin.roles[0].organisation.name} ».")
    click.echo(f"Administrateur : {admin.full_name} <{admin.email}>. Lien d'invitation "
               f"(valable {accounts.INVITATION_DAYS} jours, un seul usage) :")
    click.echo(accounts.link_for(admin, "invitation"))
    accounts.send_account_email(admin, "invitation")
    click.echo("L'invitation part aussi par courriel (worker Celery).")
    click.echo(onboarding.REMINDERS_WHY)


@territory.command("oidc")
@click.option("--number", required=True, help="Numéro du département.")
@click.option("--require/--allow-password", default=None,
              help="Ses agents se connectent seulement avec le fournisseur d'identité (ProConnect), ou aussi avec "
                   "leur mot de passe.")
@click.option("--jit-domain", default=None,
              help="Crée à leur première connexion les agents inconnus de ce domaine (ex. departement92.fr)…")
@click.option("--jit-organisation", default=None, help="… dans ce service (son nom)…")
@click.option("--jit-role", type=click.Choice([role.value for role in Role]), default=Role.AGENT.value,
              show_default=True, help="… avec ce rôle.")
@click.option("--remove-jit-domain", default=None, help="Ne plus créer les agents de ce domaine.")
def territory_oidc(number: str, require: bool | None, jit_domain: str | None, jit_organisation: str | None,
                   jit_role: str, remove_jit_domain: str | None) -> None:
    """Connexion des agents d'un département avec le fournisseur d'identité (OIDC_ISSUER) : obligatoire ou non,
    création des comptes à la première connexion pour un domaine de messagerie."""
    found = db.session.query(Territory).filter_by(number=number).one_or_none()
    if found is None:
        raise click.ClickException(f"Aucun département {number}.")
    if require is not None:
        found.oidc_required = require
        db.session.commit()
    if jit_domain:
        if not jit_organisation:
            raise click.ClickException("--jit-organisation est nécessaire avec --jit-domain.")
        try:
            identities.save_jit_rule(found, jit_domain, jit_organisation, jit_role)
        except identities.RuleRefused as error:
            raise click.ClickException(str(error)) from None
    if remove_jit_domain and not identities.remove_jit_rule(found, remove_jit_domain):
        raise click.ClickException(f"Aucune création automatique pour le domaine {remove_jit_domain}.")
    click.echo(f"Département {found.number} : connexion avec le fournisseur d'identité "
               + ("obligatoire." if found.oidc_required else "possible, le mot de passe aussi."))
    for rule in identities.jit_rules(found):
        click.echo(f"Agents créés à leur première connexion : @{rule.email_domain} → {rule.organisation.name} "
                   f"({rule.role.label}).")


@click.command("seed")
@click.option("--scale", type=click.Choice(["demo", "departement"]), default="demo", show_default=True,
              help="demo : un petit département de démonstration ; departement : données réalistes à l'échelle d'un département.")
@click.option("--rdvs", type=int, default=None, help="Nombre de rdvs à générer (échelle departement).")
@click.option("--if-empty", is_flag=True, help="Ne rien faire si la base contient déjà un territoire.")
def seed(scale: str, rdvs: int | None, if_empty: bool) -> None:
    """Remplit la base avec un département de démonstration ou de test de charge."""

    if if_empty and db.session.scalar(db.select(Territory).limit(1)) is not None:
        click.echo("La base contient déjà des données : rien à faire.")
        return
    if scale == "demo":
        logins = seeding.seed_demo()
        click.echo("Département de démonstration créé. Comptes de démonstration :")
        for email, password, role in logins:
            click.echo(f"  {email:<40} {password:<20} {role}")
    else:
        report = seeding.seed_departement(rdv_count=rdvs or seeding.DEPARTEMENT_RDVS, progress=click.echo)
        click.echo(report)


@territory.command("configure")
@click.argument("number")
@click.option("--reminder-offsets", default=None, help="Heures avant le rdv, par exemple « 72,24 » (J-3 et J-1, le défaut).")
@click.option("--sms-sender", default=None, help="Numéro (+33…) ou nom alphanumérique (11 caractères au plus).")
@click.option("--messaging-service-sid", default=None, help="Messaging Service Twilio (MG…) ; vide pour aucun.")
@click.option("--replies/--no-replies", "takes_replies", default=None,
              help="L'expéditeur reçoit-il les réponses (OUI / ANNULER) ? Un nom alphanumérique ne le peut pas.")
@click.option("--quiet-hours", default=None, help="Heures sans SMS, par exemple « 20h-8h ».")
def configure_territory(number: str, reminder_offsets: str | None, sms_sender: str | None,
                        messaging_service_sid: str | None, takes_replies: bool | None, quiet_hours: str | None) -> None:
    """Règle les SMS d'un département : rappels, expéditeur, réponses, heures sans SMS."""
    try:
        territory = onboarding.configure_territory(number, reminder_offsets=reminder_offsets, sms_sender=sms_sender,
                              messaging_service_sid=messaging_service_sid, takes_replies=takes_replies,
                              quiet_hours=quiet_hours)
    except OnboardingError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Département {territory.number} — {territory.name} : rappels {territory.reminder_offsets} h avant, "
               f"expéditeur {territory.sms_sender or 'aucun'}"
               f"{' (Messaging Service ' + territory.twilio_messaging_service_sid + ')' if territory.twilio_messaging_service_sid else ''}, "
               f"réponses {'acceptées' if territory.sms_takes_replies else 'non'}, pas de SMS de "
               f"{territory.quiet_hours_start:%H:%M} à {territory.quiet_hours_end:%H:%M}.")
