"""Command-line tools: `flask --app lapins seed ...`, `flask --app lapins territory create ...`."""
from __future__ import annotations

import click
from flask import Flask

from lapins.extensions import db


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
    from lapins.auth import accounts
    from lapins.onboarding import OnboardingError, create_territory as create

    try:
        admin = create(number=number, name=name, timezone=timezone_name, admin_email=admin_email,
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


@click.command("seed")
@click.option("--scale", type=click.Choice(["demo", "departement"]), default="demo", show_default=True,
              help="demo : un petit département de démonstration ; departement : données réalistes à l'échelle d'un département.")
@click.option("--rdvs", type=int, default=None, help="Nombre de rdvs à générer (échelle departement).")
@click.option("--if-empty", is_flag=True, help="Ne rien faire si la base contient déjà un territoire.")
def seed(scale: str, rdvs: int | None, if_empty: bool) -> None:
    """Remplit la base avec un département de démonstration ou de test de charge."""
    from lapins import seeding
    from lapins.models import Territory

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
