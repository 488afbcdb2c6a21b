"""One agent's week agenda (the calendar's JSON events) under concurrent clients, served by gunicorn."""
from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import func, select

from bench.measure import elapsed_ms, now_ns, summary
from lapins.infra.extensions import db
from lapins.models import Agent, Organisation, PlageOuverture, RdvAgent, Territory, utcnow
from lapins.onboarding.seeding import DEPARTEMENT_PASSWORD

ROOT = Path(__file__).resolve().parent.parent
EVENTS_PATH = "/agenda/api/agents/{agent_id}/evenements"


@dataclass(frozen=True)
class ServerConfig:
    """gunicorn on 2 cores: one single-threaded (sync) process per core, as for CPU-bound work behind a proxy.

    A request costs a few milliseconds of Python and waits on the database for a fraction of a millisecond:
    threads would mostly queue for the GIL (docs/benchmarks.md has the figures of both).
    """

    workers: int = 2
    worker_class: str = "sync"
    threads: int = 1  # more than 1 turns gunicorn's sync workers into gthread ones
    keep_alive: int = 30  # seconds, for gthread: clients stay connected while the others log in, as browsers would

    def as_dict(self) -> dict:
        return {"server": "gunicorn", "worker_class": self.worker_class, "workers": self.workers,
                "threads": self.threads, "keep_alive_s": self.keep_alive if self.worker_class != "sync" else None}


@dataclass
class ClientResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    events_seen: int = 0
    last_body: bytes = b""  # the last full answer (200)
    last_etag: str | None = None  # its ETag, if the server sent one
    not_modified: int = 0  # timed answers 304 Not Modified


def busiest_agents(territory_id: int, count: int, monday: date, tz) -> list[Agent]:
    """The agents with the most rdvs in the measured week: a realistic, full agenda."""
    from lapins.slots.engine import local_midnight

    start, end = local_midnight(monday, tz), local_midnight(monday + timedelta(days=7), tz)
    organisations = select(Organisation.id).where(Organisation.territory_id == territory_id)
    agents_with_plages = select(PlageOuverture.agent_id).where(PlageOuverture.organisation_id.in_(organisations))
    ranked = (select(RdvAgent.agent_id).where(RdvAgent.agent_id.in_(agents_with_plages), RdvAgent.starts_at >= start,
                                              RdvAgent.starts_at < end)
              .group_by(RdvAgent.agent_id).order_by(func.count().desc(), RdvAgent.agent_id).limit(count))
    ids = list(db.session.scalars(ranked))
    return [db.session.get(Agent, agent_id) for agent_id in ids]


class Gunicorn:
    """gunicorn serving the app on 127.0.0.1 against the benchmark database, for the duration of a `with`."""

    def __init__(self, database_url: str, config: ServerConfig, redis_url: str | None = None,
                 application: str = "lapins:create_app()", env: dict | None = None):
        self.database_url, self.config, self.redis_url = database_url, config, redis_url
        self.application, self.env = application, env or {}
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        env = {**os.environ, "DATABASE_URL": self.database_url, "LAPINS_ENV": "development",
               "SECRET_KEY": secrets.token_hex(32), "LOG_LEVEL": "WARNING",
               "CELERY_BROKER_URL": self.redis_url or "memory://", **self.env}
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                   "--workers", str(self.config.workers), "--threads", str(self.config.threads),
                   "--worker-class", self.config.worker_class, "--keep-alive", str(self.config.keep_alive),
                   "--log-level", "warning",
                   self.application]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        self._wait_until_ready()
        return self

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def _wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn s'est arrêté au démarrage (voir sa sortie d'erreur ci-dessus).")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/connexion")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn ne répond pas sur /connexion après 30 s.")


class CookieConnection:
    """A keep-alive connection to 127.0.0.1 that keeps the cookies it is sent, as a browser does."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def send(self, method: str, path: str, body: str | None, headers: dict):
        headers = {**headers, "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):
            # gunicorn's sync workers close the connection after each answer: reconnect once, as a browser would.
            self.connection.close()
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
        payload = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response, payload


class AgentClient(CookieConnection):
    """A signed-in agent on a keep-alive connection: logs in through the real form, CSRF token included.

    Like a browser's HTTP cache for FullCalendar's fetch(), it keeps the ETag of each address's last full answer and
    sends it back in If-None-Match when it asks for that address again (`conditional`); a 304 then stands for that
    answer. A server that sends no ETag gets no If-None-Match, as from a browser.
    """

    def __init__(self, port: int, agent: Agent, conditional: bool = True):
        super().__init__(port)
        self.agent_id, self.email = agent.id, agent.email
        self.conditional = conditional
        self.etags: dict[str, str] = {}  # path → ETag of its last 200
        self.last_full: dict[str, tuple[bytes, str | None]] = {}  # path → its last 200's body and ETag

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None):
        headers = dict(headers or {})
        if method == "GET" and self.conditional and path in self.etags:
            headers["If-None-Match"] = self.etags[path]
        response, payload = self.send(method, path, body, headers)
        if method == "GET" and response.status == 200:
            etag = response.getheader("ETag")
            self.last_full[path] = (payload, etag)
            if etag:
                self.etags[path] = etag
            else:
                self.etags.pop(path, None)
        return response, payload

    def log_in(self) -> None:
        _, page = self.request("GET", "/connexion")
        match = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
        if not match:
            raise RuntimeError("pas de jeton CSRF dans /connexion")
        form = urlencode({"email": self.email, "password": DEPARTEMENT_PASSWORD, "csrf_token": match.group(1).decode()})
        response, _ = self.request("POST", "/connexion", form, {"Content-Type": "application/x-www-form-urlencoded"})
        if response.status != 302 or "/connexion" in (response.getheader("Location") or ""):
            raise RuntimeError(f"connexion refusée pour l'agent {self.agent_id} (HTTP {response.status})")


def run_clients(port: int, agents: list[Agent], week_query: str, requests_each: int, warmup_each: int,
                log, sign_in: bool = True, conditional: bool = True) -> tuple[list[ClientResult], float]:
    """One thread per agent, all released together; each fetches its own week back to back (closed loop), with
    If-None-Match once it has an ETag for it, as a browser would (AgentClient)."""
    clients = [AgentClient(port, agent, conditional) for agent in agents]
    for client in clients:
        if sign_in:
            client.log_in()
    released: list[float] = []
    barrier = threading.Barrier(len(clients), action=lambda: released.append(time.perf_counter()))
    results = [ClientResult() for _ in clients]

    def work(client: AgentClient, result: ClientResult) -> None:
        path = EVENTS_PATH.format(agent_id=client.agent_id) + "?" + week_query
        try:
            for _ in range(warmup_each):
                client.request("GET", path)
        except OSError as error:
            result.errors.append(f"échauffement : {type(error).__name__}")
        barrier.wait(timeout=300)
        for _ in range(requests_each):
            began = now_ns()
            try:
                response, _ = client.request("GET", path)
            except OSError as error:
                result.errors.append(type(error).__name__)
                continue
            took = elapsed_ms(began)
            if response.status == 304 and path in client.etags:
                result.latencies_ms.append(took)
                result.not_modified += 1
                continue
            if response.status != 200:
                result.errors.append(f"HTTP {response.status}")
                continue
            result.latencies_ms.append(took)
        # The last full answer (a warm-up's, when every timed one was a 304: what the browser's cache holds).
        last, etag = client.last_full.get(path, (b"", None))
        # Parsed once: the client shares the server's two cores, and decoding every answer would slow the server.
        result.events_seen = len(json.loads(last)) if last else 0
        result.last_body, result.last_etag = last, etag

    threads = [threading.Thread(target=work, args=pair, daemon=True) for pair in zip(clients, results)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - released[0]
    log(f"{len(clients)} client(s) : {sum(len(r.latencies_ms) for r in results)} requêtes mesurées en {seconds:.1f} s")
    return results, seconds


def bench_agenda_week(database_url: str, territory_id: int, clients: int, requests_each: int, warmup_each: int,
                      config: ServerConfig, log, redis_url: str | None = None, conditional: bool = True) -> dict:
    territory = db.session.get(Territory, territory_id)
    tz = territory.tz
    today = utcnow().astimezone(tz).date()
    monday = today - timedelta(days=today.weekday()) + timedelta(weeks=1)  # next week: the fullest one
    agents = busiest_agents(territory_id, clients, monday, tz)
    if not agents:
        raise RuntimeError(f"aucun agent n'a de rdv la semaine du {monday:%d/%m/%Y} : rien à mesurer")
    for agent in agents:
        _ = agent.email
    db.session.rollback()
    # FullCalendar asks with the territory's wall-clock times (no offset); the API reads them in territory.tz.
    week_query = urlencode({"start": f"{monday.isoformat()}T00:00:00",
                            "end": f"{(monday + timedelta(days=7)).isoformat()}T00:00:00"})
    with Gunicorn(database_url, config, redis_url) as server:
        log(f"gunicorn prêt sur 127.0.0.1:{server.port} ({config.workers} processus {config.worker_class} "
            f"× {config.threads} fil(s))")
        alone, _ = run_clients(server.port, agents[:1], week_query, requests_each, warmup_each, log,
                               conditional=conditional)
        results, wall = run_clients(server.port, agents, week_query, requests_each, warmup_each, log,
                                    conditional=conditional)
    floor = measure_floor(database_url, config, agents, week_query, requests_each, warmup_each, results, log,
                          conditional)
    concurrent = figures_of(results, wall)
    concurrent_errors = [error for result in results for error in result.errors]
    errors = concurrent_errors + alone[0].errors
    events = sorted(result.events_seen for result in results)
    single = summary(alone[0].latencies_ms)
    return {
        **concurrent,
        "single_client_p50_ms": single["p50_ms"], "single_client_p95_ms": single["p95_ms"],
        "clients": len(agents), "requests": concurrent["runs"] + len(concurrent_errors), "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "events_per_week_median": events[len(events) // 2] if events else 0, "week": monday.isoformat(),
        "conditional": conditional,
        "not_modified_share": round(sum(result.not_modified for result in results) / concurrent["runs"], 3)
        if concurrent["runs"] else None,
        "config": config.as_dict(),
        "floor_p50_ms": floor["p50_ms"], "floor_p95_ms": floor["p95_ms"],
        "floor_throughput_rps": floor["throughput_rps"],
        "floor_ratio": round(concurrent["p95_ms"] / floor["p95_ms"], 2) if concurrent["runs"] else None,
    }


def figures_of(results: list[ClientResult], wall: float) -> dict:
    """The latency summary of every client's timed requests, and their throughput over the wall-clock time."""
    latencies = [value for result in results for value in result.latencies_ms]
    return {**summary(latencies), "throughput_rps": round(len(latencies) / wall, 1) if wall else None}


def measure_floor(database_url: str, config: ServerConfig, agents: list[Agent], week_query: str, requests_each: int,
                  warmup_each: int, results: list[ClientResult], log, conditional: bool = True) -> dict:
    """The same clients against bench/floor_app.py on the same gunicorn: every answer the agenda's median-sized body,
    no application behind it, with the agenda's ETag if it sent one (then 304 to a client that has it). What the
    agenda costs above this is Flask's and Lapins'."""
    answers = sorted(((result.last_body, result.last_etag) for result in results if result.last_body),
                     key=lambda answer: len(answer[0]))
    if not answers:
        raise RuntimeError("aucune réponse de l'agenda à rejouer pour le plancher")
    median_body, etag = answers[len(answers) // 2]
    with tempfile.NamedTemporaryFile(prefix="lapins-bench-floor-", suffix=".json") as body:
        body.write(median_body)
        body.flush()
        with Gunicorn(database_url, config, application="bench.floor_app:app",
                      env={"BENCH_FLOOR_BODY": body.name, "BENCH_FLOOR_ETAG": etag or ""}) as server:
            log(f"plancher : bench/floor_app.py sur 127.0.0.1:{server.port}, réponses de {len(median_body)} octets"
                + (f", ETag {etag}" if etag else ""))
            floor, wall = run_clients(server.port, agents, week_query, requests_each, warmup_each, log, sign_in=False,
                                      conditional=conditional)
    errors = [error for result in floor for error in result.errors]
    if errors:
        raise RuntimeError(f"plancher : {len(errors)} requêtes en erreur ({', '.join(sorted(set(errors)))})")
    return figures_of(floor, wall)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
