"""Statistics as files: the monthly figures in CSV or XLSX at once, and the rdv-level list built in the background.

Nothing that names or reaches a family (name, phone, e-mail, reason typed) ever goes into a file.

What an administrator typed (names of motifs, lieux, organisations, agents) is written as text that no spreadsheet
computes: in CSV a cell that would start a formula gets an apostrophe first (OWASP's rule against CSV injection), in
XLSX every text cell is a string, never a formula (`csv_cell`, `xlsx_cell`). Both files go through the sinks below.

A background export is claimed by a conditional UPDATE that bumps its `attempts`; the worker then beats (`heartbeat_at`)
with each batch, every write conditioned on its claim's number. An export whose heartbeat stopped (the worker died)
is taken up again from scratch by the beat's `reclaim_stale`, at most MAX_ATTEMPTS times, then marked failed: a worker
that was only slow finds its claim gone at its next batch and stops, so one export is never built by two.
"""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
from flask import current_app
from sqlalchemy import func, or_, select, update

from lapins.infra.celery_app import task_named
from lapins.infra.extensions import db
from lapins.models import (
    Agent, Export, ExportKind, ExportStatus, Lieu, Motif, MotifCatalogueEntry, Organisation, Rdv, RdvAgent, utcnow,
)
from lapins.models.rdvs import BookingChannel, status_label
from lapins.stats.figures import (
    CHANNEL_COLUMNS, CatalogueFigures, Filters, MonthFigures, Scope, _rdv_conditions, month_bounds, totals,
)

log = logging.getLogger(__name__)
BUILD_TASK = "lapins.tasks.build_export"  # defined in lapins.tasks, which imports this module

FORMATS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
BATCH = 2000
MAX_ATTEMPTS = 3  # claims of one export by a worker, the first included
INTERRUPTED = "L'export a été interrompu ; relancez-le."
FAILED = "L'export n'a pas pu être construit. Réessayez ou contactez l'équipe technique."

# The channels' table of the page, column by column (CHANNEL_COLUMNS' order), then its share booked online.
CHANNEL_HEADERS = {"agenda": "RDV pris par un agent", "online": "RDV pris en ligne",
                   "offer": "RDV pris sur une proposition acceptée", "api": "RDV pris via l'API",
                   "import": "RDV de l'historique importé"}
FIGURE_HEADERS = [
    "Mois", "RDV", "Vus", "Absents non excusés", "Taux d'absence (%)", "Annulés par la famille",
    "Annulés par le service", "Taux d'annulation (%)", "Annulations tardives (< 48 h)", "Créneaux libérés re-réservés",
    "Délai médian de re-réservation (h)", "Propositions de créneaux libérés", "Propositions acceptées",
    "Taux d'acceptation (%)", "SMS envoyés", "Segments SMS", "Déplacés par la famille",
    "Séances collectives", "Places offertes", "Places prises", "Taux de remplissage (%)", "Places présentes",
    "Places absentes", "Taux d'absence aux séances (%)",
    *(CHANNEL_HEADERS[key] for key, _ in CHANNEL_COLUMNS), "Part en ligne (%)",
]
RDV_HEADERS = [
    "N° du RDV", "Mois", "Date", "Heure", "Organisation", "Lieu", "Agents", "Motif", "Statut", "Annulé par",
    "Canal d'annulation", "Heures avant le RDV (annulation)", "Canal de prise du RDV", "Motif du catalogue du territoire",
]
CHANNEL_LABELS = dict(CHANNEL_COLUMNS)
CATALOGUE_HEADERS = ["Motif du catalogue", "Organisation", "RDV", "Vus", "Absents non excusés", "Taux d'absence (%)"]
CANCELLERS = {"agent": "Le service", "family": "La famille", "system": "Le système"}


def _rounded(value: float | None, factor: float = 1) -> float | None:
    return None if value is None else round(value * factor, 1)


def figure_rows(figures: list[MonthFigures]) -> list[list]:
    """The page's table, a row per month and one for the whole period."""
    def row(label: str, month: MonthFigures) -> list:
        return [label, month.rdvs, month.seen, month.noshow, _rounded(month.noshow_rate, 100), month.excused,
                month.revoked, _rounded(month.cancellation_rate, 100), month.late_cancellations, month.rebooked,
                _rounded(month.median_rebook_hours), month.offers, month.offers_accepted,
                _rounded(month.acceptance_rate, 100), month.sms_sent, month.sms_segments, month.family_moves,
                month.sessions, month.places_offered, month.places_taken, _rounded(month.fill_rate, 100),
                month.places_present, month.places_absent, _rounded(month.session_noshow_rate, 100),
                *(month.by_channel.get(key, 0) for key, _ in CHANNEL_COLUMNS),
                _rounded(month.by_channel.get(BookingChannel.ONLINE.value, 0) / month.rdvs if month.rdvs else None,
                         100)]

    return [row(f"{month.month:%Y-%m}", month) for month in figures] + [row("Total", totals(figures))]


# A spreadsheet reads a cell starting with one of these as a formula: "=HYPERLINK(...)" or "@SUM(1+1)*cmd|..." typed
# as a motif's name would run in the territory's spreadsheet (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A value as a CSV cell: empty for None, decimal commas, and text that would start a formula behind an
    apostrophe (numbers are ours: a negative one stays a number)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(value).replace(".", ",")
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def xlsx_cell(sheet, value):
    """A value as an XLSX cell: text always a string. openpyxl would store "=..." as a live formula and "#N/A" as an
    error, and refuses control characters (a whole export failing on one name): such text gets a cell of its own,
    typed string, marked quoted so that editing it in Excel keeps it text."""
    if not isinstance(value, str) or not (value.startswith(FORMULA_STARTS) or value in ERROR_CODES
                                          or ILLEGAL_CHARACTERS_RE.search(value)):
        return value
    cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))
    cell.data_type = "s"
    cell.quotePrefix = True
    return cell


def to_csv(headers: list[str], rows) -> bytes:
    sink = _CsvSink(headers)
    sink.write(rows)
    return sink.finish()


def to_xlsx(headers: list[str], rows, title: str) -> bytes:
    sink = _XlsxSink(headers, title)
    sink.write(rows)
    return sink.finish()


def figures_file(figures: list[MonthFigures], file_format: str) -> bytes:
    rows = figure_rows(figures)
    return to_csv(FIGURE_HEADERS, rows) if file_format == "csv" else to_xlsx(FIGURE_HEADERS, rows, "Statistiques")


def catalogue_file(rows: list[CatalogueFigures], file_format: str) -> bytes:
    """The same catalogue motif compared across organisations (issue 23.6), as the statistics page shows it."""
    lines = [[row.entry, row.organisation, row.rdvs, row.seen, row.noshow, _rounded(row.noshow_rate, 100)]
             for row in rows]
    return (to_csv(CATALOGUE_HEADERS, lines) if file_format == "csv"
            else to_xlsx(CATALOGUE_HEADERS, lines, "Catalogue des motifs"))


def export_filename(prefix: str, filters: Filters, file_format: str) -> str:
    return f"{prefix}-{filters.first_month:%Y-%m}-{filters.last_month:%Y-%m}.{file_format}"


# --- The rdv-level list, in the background -------------------------------------------------------------------

def scope_of_export(export: Export) -> tuple[Scope, Filters]:
    territory = export.territory
    if export.organisation_id is not None:
        scope = Scope(territory.id, territory.timezone, (export.organisation_id,))
    else:
        scope = Scope(territory.id, territory.timezone, tuple(org.id for org in territory.organisations), True)
    params = export.params or {}
    filters = Filters(date.fromisoformat(params["du"] + "-01"), date.fromisoformat(params["au"] + "-01"),
                      params.get("lieu"), params.get("agent"), params.get("motif"))
    return scope, filters


def count_rdvs(scope: Scope, filters: Filters) -> int:
    bounds = month_bounds(filters.months, scope.tz)
    return db.session.scalar(select(func.count(Rdv.id)).where(*_rdv_conditions(scope, filters, bounds))) or 0


def rdv_batches(scope: Scope, filters: Filters, size: int | None = None) -> Iterator[list[list]]:
    """Rows of the rdv list, in batches read by id (keyset), so that progress can be committed between them."""
    tz, size = scope.tz, size or BATCH
    bounds = month_bounds(filters.months, tz)
    last_id = 0
    while True:
        rows = db.session.execute(
            select(Rdv.id, Rdv.starts_at, Rdv.status, Rdv.cancelled_at, Rdv.cancelled_via, Rdv.cancelled_by_party,
                   Organisation.name, Lieu.name, Motif.name, MotifCatalogueEntry.name, Rdv.booked_via)
            .join(Organisation, Organisation.id == Rdv.organisation_id).join(Motif, Motif.id == Rdv.motif_id)
            .outerjoin(Lieu, Lieu.id == Rdv.lieu_id)
            .outerjoin(MotifCatalogueEntry, MotifCatalogueEntry.id == Motif.catalogue_id)
            .where(*_rdv_conditions(scope, filters, bounds), Rdv.id > last_id).order_by(Rdv.id).limit(size)).all()
        if not rows:
            return
        agents: dict[int, list[str]] = {}
        for rdv_id, first_name, last_name in db.session.execute(
                select(RdvAgent.rdv_id, Agent.first_name, Agent.last_name).join(Agent, Agent.id == RdvAgent.agent_id)
                .where(RdvAgent.rdv_id.in_([row[0] for row in rows])).order_by(Agent.last_name)):
            agents.setdefault(rdv_id, []).append(f"{first_name} {last_name}")
        batch = []
        for rdv_id, starts_at, status, cancelled_at, via, party, organisation, lieu, motif, entry, booked in rows:
            local = starts_at.astimezone(tz)
            hours_before = None if cancelled_at is None else int((starts_at - cancelled_at).total_seconds() // 3600)
            batch.append([rdv_id, f"{local:%Y-%m}", f"{local:%d/%m/%Y}", f"{local:%H:%M}", organisation, lieu or "",
                          ", ".join(agents.get(rdv_id, [])), motif, status_label(status, starts_at),
                          CANCELLERS.get(party.value, "") if party else "", via.label if via else "", hours_before,
                          CHANNEL_LABELS[str(booked or BookingChannel.AGENDA)], entry or ""])
        yield batch
        last_id = rows[-1][0]


class _CsvSink:
    """Semicolons, decimal commas and a BOM: what a spreadsheet set to French opens without asking."""

    def __init__(self, headers: list[str]):
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, delimiter=";", lineterminator="\r\n")
        self.writer.writerow([csv_cell(value) for value in headers])

    def write(self, rows) -> None:
        self.writer.writerows([csv_cell(value) for value in row] for row in rows)

    def finish(self) -> bytes:
        return ("\ufeff" + self.buffer.getvalue()).encode("utf-8")


class _XlsxSink:
    def __init__(self, headers: list[str], title: str = "Rendez-vous"):
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet(title[:31])
        self.sheet.append([xlsx_cell(self.sheet, value) for value in headers])

    def write(self, rows) -> None:
        for row in rows:
            self.sheet.append([xlsx_cell(self.sheet, value) for value in row])

    def finish(self) -> bytes:
        buffer = io.BytesIO()
        self.workbook.save(buffer)
        return buffer.getvalue()


def request_export(actor: Agent, territory_id: int, organisation_id: int | None, filters: Filters,
                   file_format: str) -> Export:
    """Records the request; the caller commits, then enqueues `lapins.tasks.build_export`."""
    export = Export(requested_by_id=actor.id, territory_id=territory_id, organisation_id=organisation_id,
                    kind=ExportKind.RDVS, file_format=file_format, params=filters.as_params(),
                    status=ExportStatus.PENDING, heartbeat_at=utcnow())
    db.session.add(export)
    return export


def run_export(export_id: int) -> None:
    """Builds the file of a pending export, committing progress and a heartbeat after each batch.

    Claimed by a conditional UPDATE, so a task delivered twice finds nothing to do; every later write is conditioned
    on this claim, so a worker whose export was taken up again (`reclaim_stale`) stops at its next batch.
    """
    now = utcnow()
    attempt = db.session.scalar(
        update(Export).where(Export.id == export_id, Export.status == ExportStatus.PENDING)
        .values(status=ExportStatus.RUNNING, started_at=now, heartbeat_at=now, attempts=Export.attempts + 1,
                progress_done=0, progress_total=0)
        .returning(Export.attempts).execution_options(synchronize_session=False))
    db.session.commit()
    if attempt is None:
        return
    export = db.session.get(Export, export_id)
    try:
        scope, filters = scope_of_export(export)
        if not _beat(export_id, attempt, progress_total=count_rdvs(scope, filters)):
            return
        sink = _CsvSink(RDV_HEADERS) if export.file_format == "csv" else _XlsxSink(RDV_HEADERS)
        done = 0
        for batch in rdv_batches(scope, filters):
            sink.write(batch)
            done += len(batch)
            if not _beat(export_id, attempt, progress_done=done):
                log.warning("export %s was taken up by another worker: attempt %s stops", export_id, attempt)
                return
        _beat(export_id, attempt, content=sink.finish(), status=ExportStatus.DONE, finished_at=utcnow(),
              filename=export_filename("rendez-vous", filters, export.file_format))
    except Exception:
        db.session.rollback()
        log.exception("export %s failed", export_id)  # the id only: no data of families in the logs
        _beat(export_id, attempt, status=ExportStatus.FAILED, finished_at=utcnow(), error=FAILED)


def _beat(export_id: int, attempt: int, **values) -> bool:
    """Write `values` and a heartbeat, and commit, if this claim still holds the export; False if it was taken up."""
    kept = db.session.execute(
        update(Export).where(Export.id == export_id, Export.status == ExportStatus.RUNNING, Export.attempts == attempt)
        .values(heartbeat_at=utcnow(), **values).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return bool(kept)


def reclaim_stale(now: datetime | None = None) -> list[int]:
    """The beat's job: exports whose heartbeat stopped are queued again from scratch, or failed after MAX_ATTEMPTS.

    A running export silent for EXPORT_STALE_AFTER_SECONDS lost its worker; a pending one that long lost its task
    (the broker forgot it) and is queued again. Each change is a conditional UPDATE on what was read (status, claim
    number, heartbeat still old), so a worker beating meanwhile, or another beat, wins. Returns the ids queued.
    """
    now = now or utcnow()
    stale_before = now - timedelta(seconds=current_app.config["EXPORT_STALE_AFTER_SECONDS"])
    stale = or_(Export.heartbeat_at.is_(None), Export.heartbeat_at < stale_before)
    rows = db.session.execute(
        select(Export.id, Export.status, Export.attempts)
        .where(Export.status.in_([ExportStatus.PENDING, ExportStatus.RUNNING]), stale).order_by(Export.id)).all()
    queued, interrupted = [], 0
    for export_id, status, attempts in rows:
        still = (Export.id == export_id, Export.status == status, Export.attempts == attempts, stale)
        if status == ExportStatus.PENDING:
            values: dict = {"heartbeat_at": now}
        elif attempts >= MAX_ATTEMPTS:
            values = {"status": ExportStatus.FAILED, "finished_at": now, "error": INTERRUPTED}
        else:
            values = {"status": ExportStatus.PENDING, "heartbeat_at": now, "progress_done": 0}
        changed = db.session.execute(update(Export).where(*still).values(**values)
                                     .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if changed and values.get("status") == ExportStatus.FAILED:
            interrupted += 1
        elif changed:
            queued.append(export_id)
    if rows:
        log.warning("exports: %s queued again, %s failed after %s attempts (ids %s)", len(queued), interrupted,
                    MAX_ATTEMPTS, [row[0] for row in rows])
    for export_id in queued:  # after the commits: the worker must find the rows pending
        _enqueue(export_id)
    return queued


def _enqueue(export_id: int) -> None:
    try:
        task_named(BUILD_TASK).delay(export_id)
    except Exception:  # the broker down: the export stays pending and the next beat queues it again
        log.warning("exports: broker unreachable, export %s waits for the next beat", export_id, exc_info=True)
