"""`flask --app lapins retention run [--dry-run]`: the retention job by hand, saying what it did (counts only)."""
from __future__ import annotations

import click
from lapins.privacy import retention as job


@click.group("retention")
def retention() -> None:
    """Durées de conservation des données personnelles (RETENTION_RDV_DAYS, RETENTION_MESSAGE_CONTENT_DAYS)."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Compter seulement ce qui serait supprimé ou anonymisé, sans rien changer.")
def run(dry_run: bool) -> None:
    """Supprime les rdvs anciens et efface le contenu des messages anciens."""
    from flask import current_app

    config = current_app.config
    report = job.run(dry_run=dry_run)
    rdv_days, content_days = config["RETENTION_RDV_DAYS"], config["RETENTION_MESSAGE_CONTENT_DAYS"]
    click.echo(("Simulation (rien n'a été modifié) : " if dry_run else "Fait : ")
               + (f"rdvs terminés depuis plus de {rdv_days} jours" if rdv_days else "suppression des rdvs désactivée")
               + ", "
               + (f"contenu des messages de plus de {content_days} jours" if content_days
                  else "anonymisation des messages désactivée") + ".")
    verb = "à traiter" if dry_run else "traités"
    for label, value in report.lines():
        click.echo(f"  {label} : {value}")
    click.echo(f"Total {verb} : {sum(value for _, value in report.lines())}.")
