"""The outbox's fence on a real Redis: a batch taken for gone begins no send any more, its unmarked messages are
known never begun, and nothing is concluded from a Redis that restarted or cannot be reached (the lease decides).
What families notice (one SMS each when a worker dies or freezes) is in test_delivery_reliability.py."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from lapins.notifications import fence

pytestmark = pytest.mark.redis

ALIVE_SECONDS = 60  # longer than any test: the batch is ended by the test, not by the clock


def config(url: str) -> dict:
    return {"OUTBOX_FENCE_URL": url, "OUTBOX_FENCE_ALIVE_SECONDS": ALIVE_SECONDS, "OUTBOX_CLAIM_LEASE_SECONDS": 20}


def end(url: str, claim: str) -> None:
    """The batch's `alive` expires, as it does a few seconds after its worker died or froze."""
    client = redis.Redis.from_url(url)
    assert client.pexpire(fence.PREFIX + "alive:" + claim, 1)
    while client.exists(fence.PREFIX + "alive:" + claim):
        time.sleep(0.005)
    client.close()


def test_a_gone_batch_begins_nothing_more_and_its_unmarked_messages_never_began(redis_url):
    settings = config(redis_url)
    claim = fence.open_claim(settings)
    other = fence.open_claim(settings)
    assert claim and other and claim != other
    assert fence.begin(settings, claim, 11) and fence.begin(settings, claim, 12)
    assert fence.begin(settings, other, 13)
    assert fence.settle_dead(settings, claim, [11, 12, 13, 14]) is None  # alive: nothing may be concluded

    end(redis_url, claim)
    assert not fence.begin(settings, claim, 13)  # refused: 13 may be on its way to another worker
    assert not fence.renew(settings, claim)  # and a renewal does not bring the batch back
    assert not fence.begin(settings, claim, 14)
    # 13 was begun by another batch, not this one: for this claim it never began.
    assert fence.settle_dead(settings, claim, [11, 12, 13, 14]) == {11, 12}
    assert fence.settle_dead(settings, other, [13]) is None  # the other batch is alive and untouched
    assert fence.renew(settings, other) and fence.begin(settings, other, 14)


def test_after_a_redis_restart_nothing_is_concluded_from_the_fence(own_redis):
    """The restarted Redis lost the marks: a message begun before the restart would look never begun. Its claim
    names the earlier run, so the fence says nothing about it, and the lease decides."""
    settings = config(own_redis.url(0))
    claim = fence.open_claim(settings)
    assert fence.begin(settings, claim, 21)
    own_redis.stop()
    own_redis.start()
    assert not fence.begin(settings, claim, 22)  # its `alive` is gone with the data: no send begins
    assert fence.settle_dead(settings, claim, [21, 22]) is None
    fresh = fence.open_claim(settings)
    assert fresh.split(":")[0] != claim.split(":")[0]
    end(own_redis.url(0), fresh)
    assert fence.settle_dead(settings, fresh, [21]) == set()  # a claim of this run is settled as usual


def test_an_unreachable_fence_sends_under_the_lease_alone_and_concludes_nothing():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = config(f"redis://127.0.0.1:{port}/0")
    assert fence.open_claim(settings) is None  # the batch goes on without a fence (its messages keep no claim_id)
    assert not fence.begin(settings, "run:batch", 31)  # a fenced batch that loses Redis begins nothing more
    assert not fence.renew(settings, "run:batch")
    assert fence.settle_dead(settings, "run:batch", [31]) is None


def test_marks_asked_by_many_threads_at_once_are_each_answered_for_their_own_batch(redis_url):
    """A process's sending threads share one call to Redis (fence._Combiner): each still gets its own answer, and
    a batch gone refuses its own sends only."""
    settings = config(redis_url)
    alive, gone = fence.open_claim(settings), fence.open_claim(settings)
    end(redis_url, gone)
    answers: dict[int, bool] = {}
    barrier = threading.Barrier(24)

    def send(message_id: int) -> None:
        barrier.wait()
        answers[message_id] = fence.begin(settings, alive if message_id % 3 else gone, message_id)

    threads = [threading.Thread(target=send, args=(message_id,)) for message_id in range(1, 25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {message_id: bool(message_id % 3) for message_id in range(1, 25)}
    assert fence.settle_dead(settings, gone, list(range(1, 25))) == set()
    end(redis_url, alive)
    assert fence.settle_dead(settings, alive, list(range(1, 25))) == {n for n in range(1, 25) if n % 3}
