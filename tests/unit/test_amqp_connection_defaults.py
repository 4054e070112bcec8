"""A RabbitMQ connection notices a partition within about 30 s unless its URL asks otherwise
(shared/bus/rabbitmq.py ``with_connection_defaults``)."""

from __future__ import annotations

from shared.bus.rabbitmq import with_connection_defaults


def test_a_plain_url_gets_a_short_heartbeat_and_connection_timeout() -> None:
    assert with_connection_defaults("amqp://guest:guest@127.0.0.1:5672/") == (
        "amqp://guest:guest@127.0.0.1:5672/?heartbeat=10&timeout=10"
    )


def test_what_the_url_sets_is_kept_and_escapes_survive() -> None:
    url = "amqp://u:p%40ss@mq/%2F?heartbeat=30"
    assert with_connection_defaults(url) == "amqp://u:p%40ss@mq/%2F?heartbeat=30&timeout=10"
    both = "amqp://mq/?heartbeat=0&timeout=5"
    assert with_connection_defaults(both) == both
