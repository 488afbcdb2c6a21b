"""`flask --app lapins territory import-lieux | import-agents`: CSV imports with a progress bar and a report."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import click
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from lapins.models import Organisation
from lapins.onboarding import history, imports


def register(app: Flask) -> None:
    """Adds the import commands to the app's `flask territory` group (lapins.onboarding.commands)."""
    group = app.cli.commands["territory"]
    assert isinstance(group, click.Group)
    group.add_command(import_lieux)
    group.add_command(import_agents)
    group.add_command(import_history)


def import_options(command: Callable) -> Callable:
    """The arguments and options both imports take."""
    decorators = [
        click.argument("number"),
        click.argument("organisation"),
        click.argument("file", type=click.File("rb")),
        click.option("--dry-run", is_flag=True, help="Vérifie chaque ligne sans rien enregistrer."),
        click.option("--all-or-nothing", is_flag=True,
                     help="N'enregistre rien si une seule ligne est rejetée (par défaut : les lignes valides "
                          "le sont)."),
        click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True, path_type=Path),
                     default=None, help="Écrit les lignes rejetées dans ce fichier CSV, avec leur motif."),
        click.option("--quiet", is_flag=True, help="Sans barre de progression."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@click.command("import-lieux")
@import_options
def import_lieux(number: str, organisation: str, file: BinaryIO, dry_run: bool, all_or_nothing: bool,
                 report_path: Path | None, quiet: bool) -> None:
    """Importe les lieux d'un service depuis un CSV (colonnes nom, adresse, telephone facultatif).

    ORGANISATION est le nom du service ou son numéro ; un lieu du même nom et de la même adresse déjà enregistré
    est compté « déjà présent ».
    """
    _run("lieux", imports.import_lieux, number, organisation, file, dry_run, all_or_nothing, report_path, quiet)


@click.command("import-agents")
@import_options
def import_agents(number: str, organisation: str, file: BinaryIO, dry_run: bool, all_or_nothing: bool,
                  report_path: Path | None, quiet: bool) -> None:
    """Importe les agents d'un service depuis un CSV (colonnes email, prenom, nom, role) et les invite par courriel.

    Rôles : admin, agent ou secrétaire (agent si la colonne est absente ou vide). Un agent qui a déjà un compte dans
    le département reçoit le rôle dans ce service, sans nouveau compte ni invitation.
    """
    _run("agents", imports.import_agents, number, organisation, file, dry_run, all_or_nothing, report_path, quiet)


@click.command("import-historique")
@import_options
@click.option("--set-baseline", is_flag=True,
              help="Fait du taux de lapins des rendez-vous passés importés le taux « avant Lapins » du département.")
def import_history(number: str, organisation: str, file: BinaryIO, dry_run: bool, all_or_nothing: bool,
                   report_path: Path | None, quiet: bool, set_baseline: bool) -> None:
    """Importe l'historique d'un service depuis un CSV : usagers (et leurs proches), rendez-vous passés et à venir.

    Colonnes (docs/deploy.md) : id_usager, nom, prenom, date_naissance, telephone, email, sms, id_responsable ;
    id_rdv, date_rdv, heure_rdv, duree, motif, lieu, agent, statut. L'export des rendez-vous de RDV-Solidarités se lit
    tel quel. Relancer le même fichier n'enregistre rien deux fois (identifiants de l'outil précédent). Les
    rendez-vous à venir reçoivent leurs rappels, jamais de confirmation.
    """

    def baseline(report: imports.ImportReport, organisation) -> None:
        found = report.baseline
        if found is None or found.rate is None:
            click.echo("Taux de lapins de l'historique : aucun rendez-vous passé vu ou manqué.")
            return
        rate = f"{found.rate * 100:.1f}".replace(".", ",")
        absents = f"{found.noshow} absent{'s' if found.noshow > 1 else ''}"
        click.echo(f"Taux de lapins de l'historique : {rate} % ({absents} sur {found.seen + found.noshow} rendez-vous "
                   f"vus ou manqués ; {found.label}).")
        if set_baseline and report.stored:
            history.set_baseline(organisation.territory, found)
            click.echo("Ce taux est désormais le taux « avant Lapins » du département.")

    _run("rendez-vous et usagers", history.import_history, number, organisation, file, dry_run, all_or_nothing,
         report_path, quiet, after=baseline)


def _run(kind: str, importer: Callable[..., imports.ImportReport], number: str, organisation_ref: str,
         file: BinaryIO, dry_run: bool, all_or_nothing: bool, report_path: Path | None, quiet: bool,
         after: Callable[[imports.ImportReport, Organisation], None] | None = None) -> None:
    try:
        organisation = imports.find_organisation(number, organisation_ref)
        table = imports.read_table(file.read())
        label = f"Import des {kind} — {organisation.name}"
        target = f"{organisation.name} (département {organisation.territory.number})"
        if quiet:
            report = importer(organisation, table, dry_run=dry_run, all_or_nothing=all_or_nothing)
        else:
            with click.progressbar(length=len(table.rows), label=label, file=sys.stderr) as bar:
                report = importer(organisation, table, dry_run=dry_run, all_or_nothing=all_or_nothing,
                                  progress=bar.update)
    except imports.ImportFileError as error:
        raise click.ClickException(f"{error} Rien n'a été enregistré.") from None
    except SQLAlchemyError:
        raise click.ClickException("Import interrompu par une erreur de la base de données. Les lots déjà "
                                   "enregistrés le restent ; relancez l'import : les lignes déjà importées seront "
                                   "comptées « déjà présentes ».") from None
    _echo_report(kind, target, report, dry_run, all_or_nothing)
    if after is not None:
        after(report, organisation)
    if report_path is not None and report.rejected:
        with report_path.open("w", encoding="utf-8-sig", newline="") as stream:
            report.write_rejections(stream)
        click.echo(f"Lignes rejetées et leurs motifs écrits dans {report_path}.")
    if report.rejected:
        sys.exit(1)


def _echo_report(kind: str, target: str, report: imports.ImportReport, dry_run: bool, all_or_nothing: bool) -> None:
    if dry_run:
        click.echo(f"Essai (--dry-run) pour {target} : rien n'a été enregistré.")
    elif not report.stored:
        click.echo(f"Rien n'a été enregistré pour {target} (--all-or-nothing) : corrigez les lignes rejetées et "
                   "relancez l'import.")
    else:
        click.echo(f"Import des {kind} pour {target} terminé.")
    verb = "à importer" if not report.stored else "importées"
    added = (f" (dont {report.added_to_organisation} agent(s) ayant déjà un compte, ajouté(s) au service)"
             if report.added_to_organisation else "")
    click.echo(f"  lignes lues : {report.read}")
    click.echo(f"  {verb} : {report.imported}{added}")
    click.echo(f"  déjà présentes : {report.present}")
    click.echo(f"  rejetées : {len(report.rejected)}")
    if report.invited:
        click.echo(f"Invitations envoyées par courriel : {report.invited} (worker Celery).")
    if report.rejected:
        click.echo("Lignes rejetées :")
        for rejection in report.rejected:
            click.echo(f"  ligne {rejection.line} : {rejection.reason}")
