"""`flask --app lapins api-token create <email> <label>` and `… revoke <prefix>`."""
from __future__ import annotations

import click
from lapins.auth import tokens


@click.group("api-token")
def api_token() -> None:
    """Les jetons d'accès des agents à l'API REST (/api/v1)."""


@api_token.command("create")
@click.argument("email")
@click.argument("label")
def create_token(email: str, label: str) -> None:
    """Crée un jeton pour l'agent EMAIL et l'affiche une seule fois."""
    try:
        row, token = tokens.create(tokens.agent_by_email(email), label)
    except tokens.TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Jeton « {row.label} » créé pour {row.agent.full_name} (préfixe {row.prefix}).")
    click.echo("Copiez-le maintenant : il ne sera plus jamais affiché.")
    click.echo(token)


@api_token.command("revoke")
@click.argument("prefix")
def revoke_token(prefix: str) -> None:
    """Révoque le jeton qui commence par PREFIX (affiché à sa création)."""
    try:
        row = tokens.revoke(prefix)
    except tokens.TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Jeton « {row.label} » ({row.prefix}) de {row.agent.full_name} révoqué.")
