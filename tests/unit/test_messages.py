"""Messages survive the wire and are recognised by type."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from shared import messages
from shared.messages import BuildServer, CommandReport, FlavorSpec, ImageSpec, InstanceSpec
from tests.support.sealing import sealed


def _build() -> BuildServer:
    server_id, action_id = uuid.uuid4(), uuid.uuid4()
    return BuildServer(
        request_id="req-1",
        server_id=server_id,
        action_id=action_id,
        admin_pass=sealed(BuildServer, "secret", server_id=server_id, action_id=action_id),
        instance=InstanceSpec(
            server_id=server_id,
            name="web",
            flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
            image=ImageSpec(id=uuid.uuid4(), name="cirros"),
            metadata={"k": "v"},
        ),
    )


def test_a_message_round_trips_through_its_encoding() -> None:
    sent = _build()
    received = messages.parse(messages.encode(sent))
    assert isinstance(received, BuildServer)
    assert received == sent
    assert received.instance.domain_name == f"instance-{sent.server_id}"


def test_parse_picks_the_class_by_type() -> None:
    report = CommandReport(
        server_id=uuid.uuid4(),
        action_id=uuid.uuid4(),
        host="h",
        command="spawn_server",
        task_state="spawning",
        success=True,
        power_state=1,
    )
    assert isinstance(messages.parse(messages.encode(report)), CommandReport)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"type": "no_such_type"}', b'{"type": "command_report", "host": "h"}'],
)
def test_unknown_or_incomplete_messages_are_rejected(body: bytes) -> None:
    with pytest.raises(ValidationError):
        messages.parse(body)
