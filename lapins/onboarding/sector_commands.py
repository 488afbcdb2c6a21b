"""`flask territory import-sectors NUMBER FILE [--apply]`: a territory's sectors from a CSV file, checked (dry run,
the default) or stored all at once (lapins.sectors.imports)."""
from __future__ import annotations

import sys
from typing import BinaryIO

import click
from flask import Flask
from sqlalchemy import select

from lapins.infra.extensions import db
from lapins.locale.communes import CommunesMissing
from lapins.models import Territory
from lapins.sectors import imports
from lapins.sectors.communes import communes

SHOWN_UNSECTORED = 20


def register(app: Flask) -> None:
    """Adds the command to the app's `flask territory` group (lapins.onboarding.commands)."""
    group = app.cli.commands["territory"]
    assert isinstance(group, click.Group)
    group.add_command(import_sectors)


@click.command("import-sectors")
@click.argument("number")
@click.argument("file", type=click.File("rb"))
@click.option("--apply", "store", is_flag=True,
              help="Enregistre les secteurs (tout ou rien). Sans cette option, vérifie seulement le fichier.")
def import_sectors(number: str, file: BinaryIO, store: bool) -> None:
    """Importe les secteurs d'un département depuis un CSV (colonnes secteur, code INSEE de la commune, code BAN de la
    rue facultatif). Les secteurs nommés dans le fichier reçoivent exactement ses communes et rues ; les autres
    secteurs ne changent pas."""
    territory = db.session.scalar(select(Territory).where(Territory.number == number.strip().upper()))
    if territory is None:
        raise click.ClickException(f"Aucun département {number} dans cette installation.")
    data = file.read(imports.MAX_BYTES + 1)
    try:
        report = (imports.apply if store else imports.check)(territory, data, communes())
    except imports.SectorFileError as error:
        if store:  # the refusal says why; the check's details help to correct the file
            try:
                _echo(imports.check(territory, data, communes()))
            except imports.SectorFileError:
                pass
        message = str(error)
        raise click.ClickException(message if "Rien n'a été" in message else f"{message} Rien n'a été enregistré.") \
            from None
    except CommunesMissing:
        raise click.ClickException("La liste des communes n'est pas installée : lancez « npm ci --ignore-scripts ».") \
            from None
    _echo(report)
    if not report.ok:
        sys.exit(1)


def _echo(report: imports.SectorReport) -> None:
    click.echo(f"{report.lines} ligne(s) lues : {len(report.sectors)} secteur(s), {report.zone_count} commune(s) ou "
               f"rue(s).")
    if report.new_sectors:
        click.echo(f"Nouveaux secteurs : {', '.join(report.new_sectors)}.")
    for message in report.errors + report.overlaps:
        click.echo(message, err=True)
    if report.unsectored:
        names = ", ".join(f"{commune.name} ({commune.code})" for commune in report.unsectored[:SHOWN_UNSECTORED])
        more = f" et {len(report.unsectored) - SHOWN_UNSECTORED} autres" if len(report.unsectored) > SHOWN_UNSECTORED \
            else ""
        click.echo(f"{len(report.unsectored)} commune(s) du département sans secteur : {names}{more}.")
    if report.applied:
        click.echo("Secteurs enregistrés.")
    elif report.ok:
        click.echo("Vérification terminée : rien n'a été enregistré (ajoutez --apply pour enregistrer).")
    else:
        click.echo("Le fichier a des erreurs : rien n'a été enregistré.", err=True)
