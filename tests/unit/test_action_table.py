"""The server actions' table (api_gateway/compute/actions/table.py): every action the
dispatcher can run has a schema, a policy rule and a plan of the one protocol, and the plans
agree with the transition table (shared/states.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from api_gateway.auth.policy import OPERATIONS, operation_of
from api_gateway.compute.actions.plan import ActionPlan, InDatabase
from api_gateway.compute.actions.table import ACTION_TABLE, ServerAction
from api_gateway.controllers.server_actions import RESPONSES
from api_gateway.http.faults import BadRequest
from shared.states import ACTIONS

#: A valid value for each action that takes parameters; the others take anything (null).
VALUES: dict[str, Any] = {
    "changePassword": {"adminPass": "s3cret"},
    "reboot": {"type": "HARD"},
    "rebuild": {"imageRef": str(uuid.uuid4())},
    "resize": {"flavorRef": "2"},
    "createImage": {"name": "snap"},
    "createBackup": {"name": "nightly", "backup_type": "daily", "rotation": 2},
    "os-resetState": {"state": "error"},
    "os-migrateLive": {"host": "h2", "block_migration": False, "disk_over_commit": False},
    "evacuate": {"host": "h2", "onSharedStorage": False, "adminPass": "s3cret"},
}

ENTRIES = sorted(ACTION_TABLE, key=lambda entry: entry.name)


def _plan(entry: ServerAction[Any, Any]) -> ActionPlan[Any]:
    plan: ActionPlan[Any] = entry.plan(entry.schema(VALUES.get(entry.name)))
    return plan


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.name)
def test_every_action_has_a_schema_a_policy_and_a_plan(entry: ServerAction[Any, Any]) -> None:
    assert callable(entry.schema)
    assert entry.policy in OPERATIONS
    plan = _plan(entry)
    assert isinstance(plan, ActionPlan)
    assert plan.action in ACTIONS  # the transition table knows what it records
    assert operation_of(plan.action) == entry.policy
    assert entry.status in (202, 204)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.name)
def test_an_action_done_in_the_database_starts_no_task(entry: ServerAction[Any, Any]) -> None:
    """No host reports on such an action, so a task it set would never end."""
    if isinstance(_plan(entry), InDatabase):
        assert ACTIONS[_plan(entry).action].task is None


@pytest.mark.parametrize("name", sorted(VALUES))
def test_a_schema_refuses_a_value_that_is_not_its_actions(name: str) -> None:
    entry = ACTION_TABLE.get(name)
    assert entry is not None
    with pytest.raises(BadRequest):
        entry.schema({"unrelated": [1, 2]} if name != "reboot" else {"type": "gentle"})


def test_a_hard_reboot_is_recorded_as_such_and_ruled_as_a_reboot() -> None:
    reboot = ACTION_TABLE.get("reboot")
    assert reboot is not None
    assert reboot.plan(reboot.schema({"type": "hard"})).action == "reboot_hard"
    assert reboot.plan(reboot.schema(None)).action == "reboot"


def test_only_actions_in_the_table_have_responses_of_their_own() -> None:
    assert set(RESPONSES) == {"rebuild", "createImage", "createBackup", "evacuate"}
    assert set(RESPONSES) <= ACTION_TABLE.names()
