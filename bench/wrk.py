"""wrk (Debian's package) as make bench's load generator: a C client that costs a tenth of the Python one per request,
so that the server, not the client, is what is measured.

`run` sends a list of requests (each its path and headers: a family's link and session cookie, say; read by the Lua
script from a file) round-robin over `connections` connections for `seconds`, and reads back what wrk's Lua `done`
hook prints: percentiles from wrk's own
latency histogram, request and error counts. The client's CPU share is wrk's user+system time over the window's wall
time across the machine's cores: a figure measured with the client above half the machine is marked not a result
(`client_bound`). `alternated` with a `rate` runs bench.paced's open loop instead (wrk's pauses stall sync workers).
"""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import paced

CLIENT_SHARE_LIMIT = 0.5  # above it, the client is a bottleneck: the figure is not a result


@dataclass(frozen=True)
class Request:
    path: str
    headers: tuple[tuple[str, str], ...] = ()


def available() -> bool:
    return shutil.which("wrk") is not None


SCRIPT = """
local data_path, first = %s, %s
local built, next_index = {}, 0
function init(args)
  for line in io.lines(data_path) do
    local fields = {}
    for field in string.gmatch(line, "[^\t]+") do fields[#fields + 1] = field end
    local headers = {}
    for i = 2, #fields do
      local name, value = string.match(fields[i], "^([^:]+): (.*)$")
      headers[name] = value
    end
    built[#built + 1] = wrk.format("GET", fields[1], headers)
  end
  next_index = first %% #built  -- each window from another place in the list: a miss stays a miss
end
function request()
  next_index = next_index %% #built + 1
  return built[next_index]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"status_errors": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _line(request: Request) -> str:
    fields = [request.path, *(f"{name}: {value}" for name, value in request.headers)]
    if any("\t" in field or "\n" in field for field in fields):
        raise ValueError("wrk : tabulation ou saut de ligne dans une requête")
    return "\t".join(fields)


def run(port: int, requests: list[Request], connections: int, seconds: float, threads: int = 1) -> dict:
    """One timed window of wrk against 127.0.0.1:port (each connection sends its next request as soon as it has
    its answer); the figures in ms and requests per second."""
    with tempfile.TemporaryDirectory(prefix="lapins-wrk-") as directory:
        data = Path(directory, "requests.tsv")
        data.write_text("\n".join(_line(request) for request in requests) + "\n")
        script = Path(directory, "requests.lua")
        script.write_text(SCRIPT % (json.dumps(str(data)), random.randrange(len(requests))))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        completed = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "30s",
             "-s", str(script), f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=seconds + 60)
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("WRK_RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"wrk a échoué (code {completed.returncode}) : "
                           f"{(completed.stderr + completed.stdout).strip()[-900:]}")
    raw = json.loads(lines[-1].removeprefix("WRK_RESULT "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    share = cpu / (wall * (os.cpu_count() or 1))
    seconds_measured = raw["duration_us"] / 1e6
    return {
        "p50_ms": round(raw["p50_us"] / 1000, 2), "p95_ms": round(raw["p95_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2), "max_ms": round(raw["max_us"] / 1000, 2),
        "requests": raw["requests"], "throughput_rps": round(raw["requests"] / seconds_measured, 1),
        "errors": raw["status_errors"] + raw["socket_errors"], "client_cpu_share": round(share, 3),
        "seconds": round(seconds_measured, 1),
    }


def alternated(app_port: int, app_requests, floor_port: int, floor_requests: list[Request],
               connections: int, seconds: float, repeats: int, log, rate: float | None = None,
               statements=None) -> dict:
    """`repeats` windows of the app and of its floor in turns (the machine's load weighs alike on both); the medians,
    the spread of the app's p95, the ratio of the medians, and whether the figures are a result at all. With
    `rate`, the open loop of bench.paced (about `rate` requests a second at random moments) instead of wrk.
    `app_requests` may be a function giving the requests anew before each window (cookies signed again);
    `statements` (bench.database.statement_counter) counts the SQL statements the app's windows ran."""
    apps, floors = [], []
    for repeat in range(repeats):
        for name, port, requests, kept in (("application", app_port, app_requests, apps),
                                           ("plancher", floor_port, floor_requests, floors)):
            counted = statements() if statements and kept is apps else None
            listed = requests() if callable(requests) else requests
            result = paced.run(port, listed, connections, seconds, rate) if rate else run(
                port, listed, connections, seconds)
            if counted is not None and result["requests"]:
                result["sql_per_request"] = round((statements() - counted) / result["requests"], 2)
            kept.append(result)
            sql = f", {result['sql_per_request']} requêtes SQL par requête" if "sql_per_request" in result else ""
            generator = "paced" if rate else "wrk"
            log(f"{generator} {repeat + 1}/{repeats} {name} : p95 {result['p95_ms']} ms, "
                f"{result['throughput_rps']} req/s, client {result['client_cpu_share']:.0%} du CPU{sql}")
    app, floor = _medians(apps), _medians(floors)
    per_request = [result["sql_per_request"] for result in apps if "sql_per_request" in result]
    client_share = max(result["client_cpu_share"] for result in apps + floors)
    return {
        **app, "p95_spread_ms": [min(r["p95_ms"] for r in apps), max(r["p95_ms"] for r in apps)],
        "floor_p50_ms": floor["p50_ms"], "floor_p95_ms": floor["p95_ms"], "floor_p99_ms": floor["p99_ms"],
        "floor_throughput_rps": floor["throughput_rps"],
        "floor_p95_spread_ms": [min(r["p95_ms"] for r in floors), max(r["p95_ms"] for r in floors)],
        "floor_ratio": round(app["p95_ms"] / floor["p95_ms"], 2) if floor["p95_ms"] else None,
        "client_cpu_share": client_share, "client_bound": client_share > CLIENT_SHARE_LIMIT,
        "errors": sum(result["errors"] for result in apps), "floor_errors": sum(r["errors"] for r in floors),
        "connections": connections, "window_seconds": seconds, "repeats": repeats,
        "load_generator": "paced (Poisson)" if rate else "wrk",
        "paced_rps": rate,
        "sql_statements_per_request": round(statistics.median(per_request), 2) if per_request else None,
    }


def _medians(results: list[dict]) -> dict:
    keys = ("p50_ms", "p95_ms", "p99_ms", "throughput_rps")
    return {key: round(statistics.median(result[key] for result in results), 2) for key in keys} | {
        "requests": sum(result["requests"] for result in results)}
