"""What a hypervisor's own word on a server's power does to its vm_state (shared/states.py),
how an agent says it (shared/messages.py), and what a password the guest cannot take leaves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shared.messages import PowerStateReport, ServerPower, encode, parse
from shared.states import COMPLETIONS, PowerState, TaskState, VmState, vm_state_for_power


@pytest.mark.parametrize(
    ("vm", "power", "after"),
    [
        (VmState.ACTIVE, PowerState.SHUTDOWN, VmState.STOPPED),  # it shut itself down
        (VmState.ACTIVE, PowerState.CRASHED, VmState.STOPPED),
        (VmState.ACTIVE, PowerState.PAUSED, VmState.PAUSED),  # its hypervisor paused it
        (VmState.ACTIVE, PowerState.SUSPENDED, VmState.SUSPENDED),
        (VmState.ACTIVE, PowerState.RUNNING, VmState.ACTIVE),
        (VmState.STOPPED, PowerState.RUNNING, VmState.ACTIVE),  # started behind our back
        (VmState.PAUSED, PowerState.RUNNING, VmState.ACTIVE),
        (VmState.SUSPENDED, PowerState.SHUTDOWN, VmState.STOPPED),  # its saved memory went
        # the hypervisor does not know it: nothing is concluded
        (VmState.ACTIVE, PowerState.NOSTATE, VmState.ACTIVE),
        # states that are not the hypervisor's to change
        (VmState.RESIZED, PowerState.SHUTDOWN, VmState.RESIZED),
        (VmState.ERROR, PowerState.RUNNING, VmState.ERROR),
        (VmState.BUILDING, PowerState.RUNNING, VmState.BUILDING),
        (VmState.RESCUED, PowerState.SHUTDOWN, VmState.RESCUED),
    ],
)
def test_a_server_on_a_host_follows_its_hypervisor(
    vm: VmState, power: PowerState, after: VmState
) -> None:
    assert vm_state_for_power(vm, power) is after


def test_a_password_the_guest_cannot_take_changes_nothing() -> None:
    assert COMPLETIONS[TaskState.UPDATING_PASSWORD].failure_keeps_state


def test_a_power_state_report_travels_as_json() -> None:
    report = PowerStateReport(
        host="compute-1",
        observed_at=datetime.now(UTC),
        servers=[ServerPower(server_id=uuid.uuid4(), power_state=int(PowerState.SHUTDOWN))],
    )
    assert parse(encode(report)) == report
