"""Reads the period and filters of a statistics page from its query string, with French messages for bad ones."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

from lapins.stats.figures import MAX_MONTHS, Filters, default_filters, month_label, months_between

_MONTH = re.compile(r"^\s*(?:(\d{4})-(\d{1,2})|(\d{1,2})/(\d{4}))\s*$")
LABELS = {"lieu": "Le lieu", "agent": "L'agent", "motif": "Le motif"}


def parse_month(value: str) -> date | None:
    match = _MONTH.match(value) if len(value) <= 20 else None
    if not match:
        return None
    year, month = (int(match[1]), int(match[2])) if match[1] else (int(match[4]), int(match[3]))
    if not (1 <= month <= 12 and 1000 <= year):
        return None
    return date(year, month, 1)


def parse_filters(args: Mapping[str, str], today: date, choices: dict[str, list[tuple[int, str]]],
                  history: tuple[date, date] | None = None) -> tuple[Filters, list[str]]:
    """The filters asked for, or the default ones with the reasons they were refused. `history` bounds the months
    (lapins.stats.figures.history_bounds): a month outside it would only give an empty page."""
    default = default_filters(today)
    errors: list[str] = []
    months = {}
    for name, label, fallback in (("du", "Le mois de début", default.first_month),
                                  ("au", "Le mois de fin", default.last_month)):
        raw = (args.get(name) or "").strip()
        months[name] = parse_month(raw) if raw else fallback
        if months[name] is not None and not history and not 2000 <= months[name].year <= 2099:
            months[name] = None
        if months[name] is None:
            errors.append(f"{label} n'est pas un mois valide : écrivez-le AAAA-MM, par exemple 2026-03.")
        elif history and raw and not history[0] <= months[name] <= history[1]:
            errors.append(f"{label} est hors de l'historique : les statistiques d'ici vont de "
                          f"{month_label(history[0])} à {month_label(history[1])}, choisissez un mois entre les deux.")
    ids = {}
    for name, label in LABELS.items():
        raw = (args.get(name) or "").strip()
        if not raw:
            ids[name] = None
        elif raw.isdigit() and len(raw) <= 12 and int(raw) in {choice_id for choice_id, _ in choices[name]}:
            ids[name] = int(raw)
        else:
            errors.append(f"{label} demandé n'existe pas ici.")
    if not errors and months["du"] > months["au"]:
        errors.append("Le mois de début doit précéder le mois de fin.")
    if not errors and len(months_between(months["du"], months["au"])) > MAX_MONTHS:
        errors.append(f"La période ne peut dépasser {MAX_MONTHS} mois.")
    if errors:
        return default, errors
    return Filters(months["du"], months["au"], ids["lieu"], ids["agent"], ids["motif"]), []
