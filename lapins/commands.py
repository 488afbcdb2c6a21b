"""Command-line tools: `flask --app lapins seed ...`."""
from __future__ import annotations

import click
from flask import Flask

from lapins.extensions import db


def register(app: Flask) -> None:
    app.cli.add_command(seed)


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
