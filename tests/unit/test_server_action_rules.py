"""The rules of the server actions that need no running system: which state each action may
start from (docs/architecture.md, *State*), the statuses on the way, the messages, and the
action table."""

from __future__ import annotations

import uuid

import pytest

from api_gateway.compute.actions import host
from api_gateway.compute.actions.table import ACTION_TABLE, ActionTable, plain
from api_gateway.http.faults import BadRequest
from api_gateway.schemas.common import validate
from api_gateway.schemas.server_actions import Reboot, RebootType, Rebuild, members
from shared import messages
from shared.messages import (
    ChangePassword,
    CommandReport,
    ConfirmResize,
    FinishResize,
    FinishRevertResize,
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
    MigrateDisk,
    RebootServer,
    RebuildServer,
    ResizeServer,
    RevertResize,
    SnapshotResult,
    SnapshotServer,
)
from shared.sealing import Keyring, generate_key
from shared.states import (
    ACTIONS,
    COMPLETIONS,
    STEPPED_TASKS,
    Status,
    TaskState,
    allowed,
    v2_status,
)


@pytest.mark.parametrize(
    ("action", "vm", "task", "ok"),
    [
        ("changePassword", "active", None, True),
        ("changePassword", "error", None, True),  # a failed change may be sent again
        ("changePassword", "building", "spawning", False),
        ("changePassword", "active", "rebooting", False),
        ("reboot", "active", None, True),
        ("reboot", "stopped", None, True),
        ("reboot", "active", "rebooting", False),
        ("reboot_hard", "paused", None, True),
        ("reboot_hard", "error", None, False),
        ("rebuild", "active", None, True),
        ("rebuild", "resized", None, False),
        ("resize", "active", None, True),
        ("resize", "stopped", None, False),
        ("resize", "active", "image_snapshot", False),
        ("confirmResize", "resized", None, True),
        ("confirmResize", "active", None, False),
        ("revertResize", "resized", None, True),
        ("revertResize", "resized", "resize_confirming", False),
        ("createImage", "active", None, True),
        ("createImage", "suspended", None, True),
        ("createImage", "active", "image_snapshot", False),
        ("createImage", "error", None, False),
    ],
)
def test_each_action_starts_only_from_its_states(
    action: str, vm: str, task: str | None, ok: bool
) -> None:
    assert allowed(action, vm, task) is ok


def test_every_task_an_action_starts_is_finished_by_someone() -> None:
    started = {t.task for t in ACTIONS.values() if t.task is not None} - {
        TaskState.DELETING,
        TaskState.RESIZE_PREP,
    }
    assert started <= set(COMPLETIONS) | STEPPED_TASKS
    assert not set(COMPLETIONS) & STEPPED_TASKS


@pytest.mark.parametrize(
    ("vm", "task", "status"),
    [
        ("active", "updating_password", "PASSWORD"),
        ("error", "updating_password", "PASSWORD"),
        ("active", "rebooting_hard", "HARD_REBOOT"),
        ("active", "resize_prep", "RESIZE"),
        ("resized", None, "VERIFY_RESIZE"),
        ("resized", "resize_confirming", "VERIFY_RESIZE"),
        ("resized", "resize_reverting", "REVERT_RESIZE"),
        # a resize rolled back after its destination failed
        ("active", "resize_reverting", "REVERT_RESIZE"),
        ("active", "image_snapshot", "ACTIVE"),
    ],
)
def test_statuses_while_actions_run(vm: str, task: str | None, status: str) -> None:
    assert v2_status(vm, task) == Status(status)


#: any sealed value: the wire does not open it
_SEALED = Keyring.from_setting(generate_key()).seal("pw", "test")


def _spec() -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


@pytest.mark.parametrize(
    "message",
    [
        ChangePassword(action_id=uuid.uuid4(), domain_name="instance-x", admin_pass=_SEALED),
        RebootServer(action_id=uuid.uuid4(), instance=_spec(), hard=True),
        RebuildServer(action_id=uuid.uuid4(), instance=_spec(), admin_pass=_SEALED),
        SnapshotServer(action_id=uuid.uuid4(), domain_name="instance-x", image_id=uuid.uuid4()),
        ResizeServer(action_id=uuid.uuid4(), migration_id=uuid.uuid4()),
        MigrateDisk(
            action_id=uuid.uuid4(), migration_id=uuid.uuid4(), instance=_spec(), dest_host="b"
        ),
        FinishResize(
            action_id=uuid.uuid4(), migration_id=uuid.uuid4(), instance=_spec(), source_host="a"
        ),
        ConfirmResize(
            action_id=uuid.uuid4(), migration_id=uuid.uuid4(), domain_name="x", dest_host="b"
        ),
        RevertResize(action_id=uuid.uuid4(), migration_id=uuid.uuid4(), domain_name="x"),
        FinishRevertResize(action_id=uuid.uuid4(), migration_id=uuid.uuid4(), instance=_spec()),
        CommandReport(
            action_id=uuid.uuid4(),
            host="h",
            command="snapshot_server",
            task_state="image_snapshot",
            success=True,
            power_state=1,
            snapshot=SnapshotResult(image_id=uuid.uuid4(), location="x.qcow2", size_bytes=3),
        ),
    ],
)
def test_action_messages_survive_the_wire(message: messages.Message) -> None:
    assert messages.parse(messages.encode(message)) == message


def test_the_core_actions_are_registered() -> None:
    assert ACTION_TABLE.names() >= {
        "changePassword",
        "reboot",
        "rebuild",
        "resize",
        "confirmResize",
        "revertResize",
        "createImage",
    }


def test_an_action_table_finds_actions_by_name_and_refuses_a_name_twice() -> None:
    pause = plain("pause", host.Pause)
    table = ActionTable(pause)

    assert table.get("pause") is pause
    assert table.get("unpause") is None
    with pytest.raises(ValueError, match="twice"):
        ActionTable(pause, pause)


def test_reboot_type_is_case_insensitive_and_defaults_to_soft() -> None:
    assert validate(Reboot, {"type": "hard"}).type is RebootType.HARD
    assert validate(Reboot, members(None)).type is RebootType.SOFT
    with pytest.raises(BadRequest):
        validate(Reboot, {"type": "gentle"})


def test_rebuild_changes_only_the_access_addresses_it_names() -> None:
    assert validate(Rebuild, {"imageRef": "x"}).access_changes() == {}
    assert validate(Rebuild, {"imageRef": "x", "accessIPv4": ""}).access_changes() == {
        "access_ipv4": ""
    }
    changes = validate(Rebuild, {"imageRef": "x", "accessIPv6": "fe80::100"}).access_changes()
    assert changes == {"access_ipv6": "fe80::100"}
