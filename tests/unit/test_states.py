"""The v2 status mapping of guide 2.1.1."""

from __future__ import annotations

import pytest

from shared.states import Status, TaskState, VmState, v2_status, vm_states_for_status


@pytest.mark.parametrize(
    ("vm", "task", "status"),
    [
        ("active", None, "ACTIVE"),
        ("building", "scheduling", "BUILD"),
        ("building", "spawning", "BUILD"),
        ("active", "rebooting", "REBOOT"),
        ("active", "rebooting_hard", "HARD_REBOOT"),
        ("active", "updating_password", "PASSWORD"),
        ("active", "rebuilding", "REBUILD"),
        ("active", "migrating", "MIGRATING"),
        ("active", "resize_prep", "RESIZE"),
        ("active", "resize_finish", "RESIZE"),
        ("active", "pausing", "ACTIVE"),
        ("active", "deleting", "ACTIVE"),
        ("stopped", None, "SHUTOFF"),
        ("resized", None, "VERIFY_RESIZE"),
        ("resized", "resize_reverting", "REVERT_RESIZE"),
        ("paused", None, "PAUSED"),
        ("suspended", None, "SUSPENDED"),
        ("rescued", None, "RESCUE"),
        ("error", None, "ERROR"),
        ("error", "updating_password", "PASSWORD"),
        ("deleted", None, "DELETED"),
        ("soft-delete", None, "DELETED"),
        ("no-such-state", None, "UNKNOWN"),
    ],
)
def test_status_is_derived_from_vm_and_task_state(vm: str, task: str | None, status: str) -> None:
    assert v2_status(vm, task) == Status(status)


def test_every_task_state_maps_to_a_status_from_every_vm_state() -> None:
    for vm in VmState:
        for task in [None, *TaskState]:
            assert isinstance(v2_status(vm.value, task), Status)


def test_only_default_statuses_can_be_filtered_on() -> None:
    assert vm_states_for_status("ACTIVE") == {VmState.ACTIVE}
    assert vm_states_for_status("DELETED") == {VmState.DELETED, VmState.SOFT_DELETED}
    assert vm_states_for_status("REBOOT") is None


def test_delete_is_allowed_in_every_state_but_deleted() -> None:
    from shared.states import allowed

    assert allowed("delete", "error", None)
    assert allowed("delete", "building", "spawning")
    assert allowed("delete", "active", "rebooting")
    assert not allowed("delete", "deleted", None)
    assert not allowed("delete", "bogus", None)
