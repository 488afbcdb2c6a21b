"""The outbox's fence, in Redis: which messages of a sending batch began their request, so that when the batch dies
the others come back in seconds instead of after the claim's lease (issue 26), and never leave twice.

A batch opens `alive:<claim>`, which expires a few seconds after its last renewal and is renewed only while it exists:
once gone it never comes back. Each send is marked `begun:<claim>:<id>` just before its request, by a script that
refuses once `alive` is gone. So a batch whose `alive` is gone sends nothing more, and its messages without a mark
never reached the provider: `settle_dead` says which. The claim is named after the Redis server's run id: after
a restart (or a failover) marks may have been lost, and such claims are left to their lease as without a fence.
The deployment must keep Redis from evicting keys (`maxmemory-policy noeviction`, as Celery's broker needs).
"""
from __future__ import annotations

import logging
import os
import secrets
import threading

import redis

logger = logging.getLogger(__name__)

PREFIX = "lapins:outbox:"
RENEW_EVERY_SECONDS = 1.0  # a live batch renews `alive` this often; it expires after OUTBOX_FENCE_ALIVE_SECONDS

_RUN_ID = "string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')"
# ARGV: prefix, batch, alive ms. Returns the claim's name.
_OPEN = f"""
local claim = {_RUN_ID} .. ':' .. ARGV[2]
redis.call('SET', ARGV[1] .. 'alive:' .. claim, '1', 'PX', ARGV[3], 'NX')
return claim
"""
# ARGV: prefix, mark ms, then (claim, message id) pairs. For each pair, 1: the send may begin (marked); 0: its batch
# is no longer alive.
_BEGIN = """
local result = {}
for index = 3, #ARGV, 2 do
  local claim = ARGV[index]
  if redis.call('EXISTS', ARGV[1] .. 'alive:' .. claim) == 1 then
    redis.call('SET', ARGV[1] .. 'begun:' .. claim .. ':' .. ARGV[index + 1], '1', 'PX', ARGV[2])
    table.insert(result, 1)
  else
    table.insert(result, 0)
  end
end
return result
"""
# ARGV: prefix, claim, message ids… -1: another Redis run (marks may be lost); -2: still alive; else the ids marked.
_SETTLE = f"""
local run = {_RUN_ID}
if string.sub(ARGV[2], 1, #run + 1) ~= run .. ':' then return -1 end
if redis.call('EXISTS', ARGV[1] .. 'alive:' .. ARGV[2]) == 1 then return -2 end
local begun = {{}}
for index = 3, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. 'begun:' .. ARGV[2] .. ':' .. ARGV[index]) == 1 then
    table.insert(begun, ARGV[index])
  end
end
return begun
"""

_clients: dict[tuple[int, str], tuple[redis.Redis, object, object, object]] = {}
_combiners: dict[tuple[int, str], _Combiner] = {}


class _Mark:
    __slots__ = ("claim", "message_id", "ready", "leads", "began")

    def __init__(self, claim: str, message_id: int) -> None:
        self.claim, self.message_id = claim, message_id
        self.ready, self.leads, self.began = threading.Event(), False, False


class _Combiner:
    """The marks a process's sending threads ask for at the same moment go to Redis in one script call, made by one
    of them (the leader) for all: one call per send cost a quarter of the outbox's throughput
    (docs/benchmarks.md). Whoever finds no call under way leads; after its call, the next waiting thread leads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: list[_Mark] = []
        self.busy = False

    def begin(self, mark: _Mark, call) -> bool:
        with self.lock:
            self.waiting.append(mark)
            mark.leads = not self.busy
            self.busy = True
        if not mark.leads:
            mark.ready.wait()
            if not mark.leads:
                return mark.began
        with self.lock:
            group, self.waiting = self.waiting, []
        answers = [0] * len(group)
        try:
            answers = call(group)
        except Exception as error:  # noqa: BLE001 — the fence cannot say: no send of the group begins
            logger.warning("Outbox fence unreachable, sends given back (%s)", type(error).__name__)
        finally:
            for other, answer in zip(group, answers):
                other.began = answer == 1
                if other is not mark:
                    other.ready.set()
            with self.lock:
                if self.waiting:
                    self.waiting[0].leads = True
                    self.waiting[0].ready.set()
                else:
                    self.busy = False
        return mark.began


def _client(url: str):
    """One client and its scripts per process and URL (a client made before a fork is not used in the child)."""
    key = (os.getpid(), url)
    found = _clients.get(key)
    if found is None:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        found = _clients[key] = (client, client.register_script(_OPEN), client.register_script(_BEGIN),
                                 client.register_script(_SETTLE))
    return found


def open_claim(config) -> str | None:
    """A new batch's claim name, its `alive` set; None without a fence or when Redis cannot be reached (the batch
    then sends as without a fence, and its messages wait for the lease if it dies)."""
    address = config.get("OUTBOX_FENCE_URL")
    if not address:
        return None
    client, opening, _begin, _settle = _client(address)
    try:
        claim = opening(args=[PREFIX, secrets.token_hex(8), _ms(config["OUTBOX_FENCE_ALIVE_SECONDS"])])
    except redis.RedisError as error:
        logger.warning("Outbox fence unreachable, batch sent under its lease alone (%s)", type(error).__name__)
        return None
    return claim.decode() if isinstance(claim, bytes) else claim


def renew(config, claim: str) -> bool:
    """Keep the batch alive; False once it is not (expired: it must send nothing more)."""
    client, *_scripts = _client(config["OUTBOX_FENCE_URL"])
    try:
        return bool(client.set(PREFIX + "alive:" + claim, "1", px=_ms(config["OUTBOX_FENCE_ALIVE_SECONDS"]), xx=True))
    except redis.RedisError:
        return False


def begin(config, claim: str, message_id: int) -> bool:
    """Mark a send as begun, just before its request; False (send nothing) once the batch is not alive or Redis
    cannot say so."""
    address = config["OUTBOX_FENCE_URL"]
    _client_, _opening, beginning, _settle = _client(address)
    mark_ms = _ms(10 * config["OUTBOX_CLAIM_LEASE_SECONDS"])  # outlives any settle_dead that may read it
    combiner = _combiners.get((os.getpid(), address))
    if combiner is None:
        combiner = _combiners[(os.getpid(), address)] = _Combiner()

    def call(group: list[_Mark]) -> list[int]:
        return beginning(args=[PREFIX, mark_ms, *(value for mark in group for value in (mark.claim, mark.message_id))])

    return combiner.begin(_Mark(claim, message_id), call)


def settle_dead(config, claim: str, ids: list[int]) -> set[int] | None:
    """For a claim whose batch is gone: the ids among `ids` whose send began (the others never will). None while
    the batch is alive, for a claim of another Redis run, or when Redis cannot be reached: nothing may be
    concluded, the lease decides."""
    _client_, _opening, _begin, settling = _client(config["OUTBOX_FENCE_URL"])
    try:
        answer = settling(args=[PREFIX, claim, *ids])
    except redis.RedisError:
        return None
    if isinstance(answer, int):
        return None
    return {int(value) for value in answer}


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
