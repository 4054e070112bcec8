"""The admin actions' rules that need no running system: the states they start from
(shared/states.py), their bodies in JSON and in the XML of the samples (Tables 3.1, 3.3),
their messages."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from api_gateway.http import xml_body
from api_gateway.http.faults import BadRequest
from api_gateway.schemas.admin_actions import create_backup, reset_state
from shared import messages
from shared.messages import (
    BackupServer,
    CommandReport,
    Fault,
    InjectNetworkInfo,
    NetworkAddress,
    PauseServer,
    ResetNetwork,
)
from shared.states import ACTIONS, COMPLETIONS, STEPPED_TASKS, Status, TaskState, VmState, allowed
from shared.states import v2_status as status_of
from tests.conformance.support import SAMPLES


def _sample(name: str) -> Any:
    data = (SAMPLES / name).read_bytes()
    return xml_body.parse(data) if name.endswith(".xml") else json.loads(data)


@pytest.mark.parametrize(
    ("action", "vm", "task", "ok"),
    [
        ("pause", "active", None, True),
        ("pause", "paused", None, False),
        ("pause", "active", "rebooting", False),
        ("unpause", "paused", None, True),
        ("unpause", "active", None, False),
        ("suspend", "active", None, True),
        ("suspend", "paused", None, False),
        ("resume", "suspended", None, True),
        ("resume", "active", None, False),
        ("migrate", "active", None, True),
        ("migrate", "resized", None, False),
        ("migrate", "active", "image_backup", False),
        ("createBackup", "active", None, True),
        ("createBackup", "stopped", None, True),
        ("createBackup", "paused", None, False),
        ("createBackup", "active", "image_snapshot", False),
        # any state, any task
        ("resetNetwork", "building", "spawning", True),
        ("injectNetworkInfo", "resized", "resize_confirming", True),
        ("lock", "error", None, True),
        ("unlock", "active", "rebooting_hard", True),
        ("os-resetState", "resized", "resize_reverting", True),
        ("os-resetState", "error", "deleting", True),
        ("os-resetState", "deleted", None, False),
    ],
)
def test_each_admin_action_starts_only_from_its_states(
    action: str, vm: str, task: str | None, ok: bool
) -> None:
    assert allowed(action, vm, task) is ok


def test_the_status_while_an_admin_action_runs_and_after() -> None:
    # nova's table: these tasks override nothing, the status stays what the vm_state says
    assert status_of("active", "pausing") is Status.ACTIVE
    assert status_of("paused", "unpausing") is Status.PAUSED
    assert status_of("active", "suspending") is Status.ACTIVE
    assert status_of("suspended", "resuming") is Status.SUSPENDED
    assert status_of("active", "image_backup") is Status.ACTIVE
    for task in (TaskState.PAUSING, TaskState.SUSPENDING, TaskState.RESUMING):
        assert COMPLETIONS[task].failure_keeps_state
    assert COMPLETIONS[TaskState.PAUSING].vm_state is VmState.PAUSED
    assert COMPLETIONS[TaskState.RESUMING].vm_state is VmState.ACTIVE
    assert TaskState.IMAGE_BACKUP in STEPPED_TASKS
    assert ACTIONS["migrate"].task is TaskState.RESIZE_PREP  # a resize's path


@pytest.mark.parametrize(
    "sample",
    ["3.18-back-up-server-instance-request.json", "3.19-back-up-server-instance-request.xml"],
)
def test_create_backup_reads_both_samples_alike(sample: str) -> None:
    backup = create_backup(_sample(sample)["createBackup"])
    assert (backup.name, backup.backup_type, backup.rotation) == ("Backup 1", "daily", 1)
    assert backup.metadata == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"backup_type": "daily", "rotation": 1}, "createBackup entity requires name attribute"),
        ({"name": "b", "rotation": 1}, "createBackup entity requires backup_type attribute"),
        ({"name": "b", "backup_type": "daily"}, "createBackup entity requires rotation attribute"),
        ({"name": "b", "backup_type": "daily", "rotation": "x"}, "must be an integer"),
        ({"name": "b", "backup_type": "daily", "rotation": 1.5}, "must be an integer"),
        ({"name": "b", "backup_type": "daily", "rotation": True}, "must be an integer"),
        ({"name": "b", "backup_type": "daily", "rotation": None}, "must be an integer"),
        ({"name": "b", "backup_type": "daily", "rotation": -1}, "greater than or equal to zero"),
        ({"name": "b", "backup_type": "daily", "rotation": "-2"}, "greater than or equal to zero"),
        ({"name": "b", "backup_type": "daily", "rotation": 2**31}, "at most 2147483647"),
        ({"name": "b", "backup_type": "daily", "rotation": "9" * 5000}, "must be an integer"),
        ({"name": "", "backup_type": "daily", "rotation": 1}, "name"),
        ({"name": "b", "backup_type": "daily", "rotation": 1, "metadata": []}, "metadata"),
        (None, "Malformed createBackup entity"),
        ("text", "Malformed createBackup entity"),
    ],
)
def test_a_bad_backup_body_is_400_with_novas_message(body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        create_backup(body)


def test_rotation_may_arrive_as_text_and_zero_is_allowed() -> None:
    backup = create_backup(
        {"name": " b ", "backup_type": "weekly", "rotation": "0", "metadata": {"k": "v"}}
    )
    assert (backup.name, backup.rotation, backup.metadata) == ("b", 0, {"k": "v"})


@pytest.mark.parametrize(
    "sample",
    ["3.22-reset-server-state-request.json", "3.23-reset-server-state-request.xml"],
)
def test_reset_state_reads_both_samples_alike(sample: str) -> None:
    assert reset_state(_sample(sample)["os-resetState"]) is VmState.ACTIVE
    assert reset_state({"state": "error"}) is VmState.ERROR


@pytest.mark.parametrize(
    "value", [None, {}, {"state": "Active"}, {"state": "building"}, {"state": 1}, "active"]
)
def test_reset_state_takes_active_or_error_only(value: Any) -> None:
    with pytest.raises(BadRequest) as refused:
        reset_state(value)
    assert refused.value.message == (
        "Desired state must be specified.  Valid states are: active, error"
    )


@pytest.mark.parametrize(
    ("sample", "action"),
    [
        ("3.2-pause-server-request.xml", "pause"),
        ("3.4-unpause-server-request.xml", "unpause"),
        ("3.6-suspend-server-request.xml", "suspend"),
        ("3.8-resume-server-request.xml", "resume"),
        ("3.11-reset-networking-on-server-request.xml", "resetNetwork"),
        ("3.13-inject-network-information-request.xml", "injectNetworkInfo"),
        ("3.15-lock-server-request.xml", "lock"),
        ("3.17-unlock-server-request.xml", "unlock"),
        ("nova-2013.1/os-admin-actions/admin-actions-migrate.xml", "migrate"),
    ],
)
def test_the_xml_samples_without_parameters_read_as_their_json_twins(
    sample: str, action: str
) -> None:
    assert _sample(sample) == {action: None}


def test_admin_action_messages_round_trip_and_parse_by_type() -> None:
    server_id = uuid.uuid4()
    envelope = {"server_id": server_id, "action_id": uuid.uuid4(), "request_id": "req-1"}
    address = NetworkAddress(network="private", version=4, addr="10.0.0.2")
    for sent in (
        PauseServer(**envelope, domain_name=f"instance-{server_id}"),
        BackupServer(**envelope, domain_name="d", image_id=uuid.uuid4()),
        InjectNetworkInfo(**envelope, domain_name="d", addresses=[address]),
        ResetNetwork(**envelope, domain_name="d", addresses=[]),
        CommandReport(
            **envelope,
            host="h",
            command="reset_network",
            task_state=None,
            success=False,
            fault=Fault(message="x"),
        ),
    ):
        received = messages.parse(messages.encode(sent))
        assert type(received) is type(sent)
        assert received == sent
