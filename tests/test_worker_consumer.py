"""The worker's consumer (lapins.infra.worker_consumer) on a real Redis: a task acked on a channel whose connection
was closed by a reconnection is logged and skipped, and the worker goes on (it stopped once, after a Redis restart,
in CI)."""
from __future__ import annotations

import logging
import uuid
from types import SimpleNamespace

import pytest
from celery.concurrency.solo import TaskPool
from celery.utils.timer2 import Timer
from celery.worker import state as worker_state
from kombu import Connection, Consumer, Queue

from lapins.infra.worker_consumer import QuickReconnect
import lapins.tasks  # noqa: F401  (registers the tasks)

HEARTBEAT = "lapins.tasks.record_heartbeat"


def received_task(celery, broker_url: str):
    """A real task message sent to Redis and taken back by a consumer on its own channel, not acked yet."""
    connection = Connection(broker_url)
    channel = connection.channel()
    queue = Queue("worker-consumer-test", channel=channel)
    queue.declare()
    headers, properties, body, _ = celery.amqp.as_task_v2(str(uuid.uuid4()), HEARTBEAT, args=(), kwargs={})
    connection.Producer().publish(body, routing_key=queue.name, headers=headers, serializer="json", **properties)
    received = []
    consumer = Consumer(channel, [queue], callbacks=[lambda _body, message: received.append(message)])
    consumer.consume()
    connection.drain_events(timeout=5)
    return connection, channel, received[0]


@pytest.fixture()
def consumer(app):
    celery = app.extensions["celery"]
    requests = []
    timer = Timer()
    built = QuickReconnect(on_task_request=requests.append, app=celery, hostname="test@lapins", pool=TaskPool(),
                           timer=timer, controller=SimpleNamespace(use_eventloop=False, semaphore=None, state=worker_state),
                           hub=None, init_callback=lambda *_: None)
    built.event_dispatcher = None
    built.update_strategies()
    yield built, requests
    timer.stop()


def test_an_ack_on_a_channel_closed_by_a_reconnection_is_logged_not_raised(app, consumer, redis_url, caplog):
    built, requests = consumer
    connection, channel, message = received_task(app.extensions["celery"], redis_url)
    # The state the worker's ack met: the connection closed under the channel, its pools gone.
    connection.close()
    channel._disconnect_pools()
    with pytest.raises(AttributeError):  # what kombu does with it, and what stopped the worker
        message.channel.basic_ack(message.delivery_tag)

    built.strategies[HEARTBEAT](message, None, message.ack_log_error, message.reject_log_error, [])
    [request] = requests
    with caplog.at_level(logging.CRITICAL, logger="celery.worker.request"):
        request.acknowledge()

    assert request.acknowledged
    assert any("Couldn't ack" in record.getMessage() for record in caplog.records), caplog.text


def test_the_consumer_reconnects_on_the_error_a_dead_channel_raises(consumer):
    built, _ = consumer
    # Consumer.start restarts the connection on these and stops the worker on any other exception.
    assert AttributeError in built.connection_errors
    assert all(error in built.connection_errors for error in built.conninfo.connection_errors)
