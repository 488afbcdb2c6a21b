"""The documented installation, end to end: what docs/deploy.md tells a département's IT team to run, run here.

PostgreSQL and Redis servers of the test's own, `flask db upgrade`, `flask territory create` / `configure`, the
CSV import of lieux, then gunicorn, a Celery worker and beat, each started with the command line the doc gives
(the test checks that the doc holds that line). The scenario then goes through the public doors only:
the administrator accepts the invitation and creates a motif in the administration pages; another system books
through the API with an agent's token; the confirmation and the reminder reach the loopback Twilio (the real SDK);
a second family, booked later, asks from its link for an earlier slot; the first family cancels from its link;
the second is offered the freed slot by SMS and accepts it, and the API shows its rdv moved there.

Real clock: the rdvs are booked a few hours ahead, the reminder set to leave a minute after the booking.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from lapins.notifications.timing import reminder_due
from tests import services
from tests.fakes.smtp import SmtpServer
from tests.fakes.twilio import TwilioFake


ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
BIN = Path(sys.executable).parent
DOC_BIN = "/srv/lapins/venv/bin/"
PARIS = ZoneInfo("Europe/Paris")
SETTLE = 90  # seconds for the worker to do what a kick asked


def documented(words: list[str], *, port: int | None = None) -> None:
    """The command as docs/deploy.md writes it (same words, line continuations joined, the doc's port 8000)."""
    text = re.sub(r"\\\n\s*", " ", DEPLOY_DOC.read_text())
    text = re.sub(r"[ \t]+", " ", text).replace('"', "")
    line = " ".join([DOC_BIN + words[0], *words[1:]])
    if port is not None:
        line = line.replace(f"127.0.0.1:{port}", "127.0.0.1:8000")
    assert line in text, f"docs/deploy.md no longer says: {line}"


class Deployment:
    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory, self.env, self.processes = directory, env, {}

    def flask(self, *args: str) -> str:
        documented(["flask", "--app", "lapins", *args[:2]])
        done = subprocess.run([str(BIN / "flask"), "--app", "lapins", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"flask {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, name: str, words: list[str], port: int | None = None, *, as_documented: list[str] | None = None):
        documented(as_documented or words, port=port)
        log = open(self.directory / f"{name}.log", "wb")
        self.processes[name] = (subprocess.Popen(
            services.dying_with_this_process([str(BIN / words[0]), *words[1:]]), cwd=ROOT, env=self.env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{(self.directory / f'{name}.log').read_text(errors='replace')[-3000:]}"
                         for name in self.processes)

    def stop(self) -> None:
        for process, log in self.processes.values():
            process.terminate()
        for process, log in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def wait_for(what: str, check, deployment: Deployment, timeout: float = SETTLE):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail(f"Waited {timeout:.0f} s for: {what}\n{deployment.logs()}")


def csrf(page: requests.Response) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)


@pytest.fixture()
def deployment(empty_postgres_url, redis_url, tmp_path):
    twilio, smtp = TwilioFake().start(), SmtpServer().start()
    port = services.free_port()
    broker = redis_url
    limits = re.sub(r"/\d+$", "/15", redis_url)
    # docs/deploy.md, section 4 (the settings file), on loopback and without nginx's TLS in front.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LAPINS_", "TEST_", "CELERY_"))}
    env.update({
        "LAPINS_ENV": "production", "SECRET_KEY": "une-cle-de-test-assez-longue-pour-la-production-0123456789",
        "DATABASE_URL": empty_postgres_url, "CELERY_BROKER_URL": broker, "RATELIMIT_STORAGE_URI": limits,
        "LAPINS_ENCRYPTION_KEY": "une-autre-cle-de-test-pour-chiffrer-les-secrets",
        "PUBLIC_URL": f"http://127.0.0.1:{port}", "SESSION_COOKIE_SECURE": "false",
        "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": twilio.account_sid, "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_BASE_URL": twilio.url,
        "EMAIL_BACKEND": "smtp", "MAIL_SERVER": smtp.host, "MAIL_PORT": str(smtp.port), "MAIL_SECURITY": "none",
        "MAIL_USERNAME": "", "MAIL_PASSWORD": "", "MAIL_FROM": "PMI <ne-pas-repondre@lenord.fr>",
    })
    lapins = Deployment(tmp_path, env)
    lapins.port, lapins.url, lapins.twilio, lapins.smtp = port, f"http://127.0.0.1:{port}", twilio, smtp
    try:
        yield lapins
    finally:
        lapins.stop()
        twilio.stop()
        smtp.stop()


def sms_to(twilio: TwilioFake, phone: str) -> list[str]:
    return [message.body for message in twilio.messages if message.to == phone]


def link_in(body: str, kind: str) -> str:
    return re.search(rf"https?://\S+/{kind}/[0-9a-f]+-[A-Za-z0-9_-]+", body).group(0)


@pytest.mark.postgres
@pytest.mark.redis
def test_the_documented_installation_runs_a_departement_end_to_end(deployment, tmp_path):
    lapins, now = deployment, datetime.now(PARIS)
    quiet_start = (now + timedelta(hours=3)).hour  # an hour of quiet far from the minutes the scenario takes
    quiet_end = (quiet_start + 1) % 24

    # Section 5: the database and the first département.
    lapins.flask("db", "upgrade")
    created = lapins.flask("territory", "create", "--number", "59", "--name", "Nord", "--timezone", "Europe/Paris",
                           "--admin-email", "prenom.nom@lenord.fr")
    invitation = re.search(r"https?://\S+/invitation/\S+", created).group(0)
    offset, start = rdv_times(now)
    lapins.flask("territory", "configure", "59", "--sms-sender", "+33757000001", "--replies",
                 "--reminder-offsets", str(offset), "--quiet-hours", f"{quiet_start}h-{quiet_end}h")
    lieux = tmp_path / "lieux.csv"
    lieux.write_text("nom;adresse;telephone\nCentre PMI Wazemmes;12 rue des Sarrazins, 59000 Lille;03 20 00 00 00\n",
                     encoding="utf-8")
    lapins.flask("territory", "import-lieux", "59", "PMI Nord", str(lieux))

    # Section 6: the three services, as their systemd units start them.
    lapins.start("web", ["gunicorn", "--bind", f"127.0.0.1:{lapins.port}", "--workers", "2", "--worker-class",
                         "sync", "--access-logfile", "-", "lapins:create_app()"], port=lapins.port)
    lapins.start("worker", ["celery", "-A", "worker", "worker", "--loglevel=INFO", "--concurrency=2",
                            "--queues=celery,lapins.beat"])
    beat = ["celery", "-A", "worker", "beat", "--loglevel=INFO", "--schedule"]
    lapins.start("beat", [*beat, str(tmp_path / "celerybeat-schedule")],
                 as_documented=[*beat, "/var/lib/lapins/celerybeat-schedule"])

    def healthy():
        try:
            return requests.get(f"{lapins.url}/healthz", timeout=10).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    wait_for("/healthz answers 200 (database and broker)", healthy, lapins, timeout=60)

    # The administrator accepts the invitation, signs in and creates a motif.
    admin = requests.Session()
    page = admin.get(invitation)
    assert page.status_code == 200
    password = "Un mot de passe de quartier 2026 !"
    accepted = admin.post(invitation, data={"csrf_token": csrf(page), "password": password, "confirm": password})
    assert accepted.status_code in (200, 302), accepted.text[:500]
    page = admin.get(f"{lapins.url}/connexion")
    signed_in = admin.post(f"{lapins.url}/connexion", data={"csrf_token": csrf(page), "email": "prenom.nom@lenord.fr",
                                                            "password": password}, allow_redirects=False)
    assert signed_in.status_code == 302, signed_in.text[:500]

    # Another system of the département will book through the API with the administrator's token.
    token = lapins.flask("api-token", "create", "prenom.nom@lenord.fr", "SI PMI").strip().splitlines()[-1]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    listed = api.get(f"{lapins.url}/api/v1/lieux")
    assert listed.status_code == 200, listed.text
    [lieu] = listed.json()["items"]
    assert lieu["name"] == "Centre PMI Wazemmes" and lieu["phone"] == "+33320000000"

    # The administrator creates the motif in the administration pages.
    new_motif = f"{lapins.url}/admin/organisations/{lieu['organisation_id']}/motifs/nouveau"
    page = admin.get(new_motif)
    assert page.status_code == 200, page.text[:500]
    created = admin.post(new_motif, data={
        "csrf_token": csrf(page), "name": "Consultation du nourrisson", "duration_minutes": "30",
        "location_type": "on_site", "color": "#000091", "cancellation_limit_hours": "4", "reminder_offsets": "",
        "move_limit_hours": "24", "family_moves_max": "2", "booking_horizon_weeks": "8",
        "notify": "y", "active": "y"}, allow_redirects=False)
    assert created.status_code == 302, created.text[:2000]

    scenario_through_the_api(lapins, api, start)


def rdv_times(now: datetime) -> tuple[int, datetime]:
    """(reminder offset in hours, start of the first rdv): the rdv 5 to 28 hours ahead, in the day (one plage of an
    hour holds both families' rdvs), on a day that is no public holiday, its reminder due 1 to 3 minutes from now."""
    import holidays

    closed = holidays.France(years=[now.year, now.year + 1])
    for hours in range(5, 29):
        start = (now + timedelta(hours=hours, minutes=2)).replace(second=0, microsecond=0)
        due = reminder_due(start, hours, PARIS)
        if 8 <= start.hour <= 18 and start.date() not in closed and timedelta(0) < due - now < timedelta(minutes=4):
            return hours, start
    pytest.fail("no time for the scenario's rdvs")  # every hour from 5 to 28 ahead cannot be excluded


def clock(instant: datetime) -> str:
    """How SMS and pages write a local time: « 9h05 », « 14h » (pages write « 09h05 », which holds « 9h05 »)."""
    return f"{instant.hour}h{instant.minute:02d}" if instant.minute else f"{instant.hour}h"


def check_identity(family: requests.Session, link: str, letters: str) -> requests.Response:
    page = family.get(link)
    assert page.status_code == 200, page.text[:500]
    checked = family.post(f"{link}/verifier", data={"csrf_token": csrf(page), "letters": letters})
    assert checked.status_code in (200, 302), checked.text[:500]
    return family.get(link)


def scenario_through_the_api(lapins: Deployment, api: requests.Session, start: datetime) -> None:
    v1 = f"{lapins.url}/api/v1"
    [lieu] = api.get(f"{v1}/lieux").json()["items"]
    [motif] = api.get(f"{v1}/motifs").json()["items"]
    [agent] = [item for item in api.get(f"{v1}/agents").json()["items"] if item["email"] == "prenom.nom@lenord.fr"]
    plage = api.post(f"{v1}/plages", json={
        "agent_id": agent["id"], "title": "Consultations", "lieu_id": lieu["id"], "motif_ids": [motif["id"]],
        "first_day": start.date().isoformat(), "last_day": start.date().isoformat(),
        "start_time": start.strftime("%H:%M"), "end_time": (start + timedelta(hours=1)).strftime("%H:%M"),
        "weekdays": [start.weekday()]})
    assert plage.status_code == 201, plage.text
    slots = api.get(f"{v1}/slots", params={"motif_id": motif["id"], "from": start.date().isoformat(), "limit": 2})
    first, second = slots.json()["items"]
    assert datetime.fromisoformat(first["starts_at"].replace("Z", "+00:00")) == start

    families = {}
    for first_name, last_name, phone, slot in (("Inès", "Durand", "+33612345678", first),
                                               ("Léa", "Martin", "+33698765432", second)):
        usager = api.post(f"{v1}/usagers", json={"first_name": first_name, "last_name": last_name, "phone": phone,
                                                 "sms_consent": True})
        assert usager.status_code == 201, usager.text
        rdv = api.post(f"{v1}/rdvs", json={"motif_id": motif["id"], "agent_ids": [agent["id"]], "lieu_id": lieu["id"],
                                           "usager_ids": [usager.json()["id"]], "starts_at": slot["starts_at"]})
        assert rdv.status_code == 201, rdv.text
        families[last_name] = (phone, rdv.json()["id"])
    booked_again = api.post(f"{v1}/rdvs", json={"motif_id": motif["id"], "agent_ids": [agent["id"]],
                                                "usager_ids": [usager.json()["id"]], "starts_at": first["starts_at"]})
    assert booked_again.status_code == 409  # the agent is taken: the API keeps the agenda's rules

    # The confirmations, then the first family's reminder, reach Twilio: one segment each, in Paris time.
    durand, martin = families["Durand"][0], families["Martin"][0]
    wait_for("the confirmations", lambda: sms_to(lapins.twilio, durand) and sms_to(lapins.twilio, martin), lapins)
    wait_for("the first family's reminder", lambda: len(sms_to(lapins.twilio, durand)) >= 2, lapins, timeout=300)
    reminder = sms_to(lapins.twilio, durand)[-1]
    assert clock(start) in reminder and "OUI" in reminder
    assert all(message.num_segments == 1 for message in lapins.twilio.messages)

    # The second family, booked later, asks from its link to be told of an earlier slot.
    later = requests.Session()
    martin_link = link_in(sms_to(lapins.twilio, martin)[0], "r")
    page = check_identity(later, martin_link, "Mar")
    asked = later.post(f"{martin_link}/plus-tot", data={"csrf_token": csrf(page)})
    assert asked.status_code in (200, 302), asked.text[:500]

    # The first family cancels from the link of its reminder.
    first_family = requests.Session()
    durand_link = link_in(reminder, "r")
    page = check_identity(first_family, durand_link, "dur")
    cancelled = first_family.post(f"{durand_link}/annuler", data={"csrf_token": csrf(page), "reason": "Malade",
                                                                   "confirme": "oui"})
    assert cancelled.status_code in (200, 302), cancelled.text[:500]
    assert api.get(f"{v1}/rdvs/{families['Durand'][1]}").json()["status"] == "excused"

    # The freed slot is offered to the second family, which accepts: its rdv moves there.
    def offer():
        return [body for body in sms_to(lapins.twilio, martin) if "/o/" in body]

    [offer_sms] = wait_for("the offer of the freed slot", offer, lapins)
    offer_link = link_in(offer_sms, "o")
    page = later.get(offer_link)
    assert page.status_code == 200 and clock(start) in page.text
    accepted = later.post(f"{offer_link}/accepter", data={"csrf_token": csrf(page)})
    assert accepted.status_code in (200, 302), accepted.text[:500]
    moved = api.get(f"{v1}/rdvs/{families['Martin'][1]}").json()
    assert moved["starts_at"] == first["starts_at"] and moved["status"] == "unknown"

