"""The policy table (api_gateway/auth/policy.py): nova 2013.1's defaults, the operator's overrides
through STRATUS_POLICY, and the one rule of what a locked server refuses."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from api_gateway.auth.policy import (
    OPERATIONS,
    Policy,
    PolicyError,
    Rule,
    check_unlocked,
    configured,
    operation_of,
)
from api_gateway.compute.actions.table import ACTION_TABLE
from api_gateway.context import RequestContext
from shared.db.records import LockedServer
from shared.errors import Conflict, NotPermitted
from shared.states import ACTIONS

MEMBER = RequestContext("alice", "p1", frozenset({"member"}), "req-1")
ADMIN = RequestContext("admin", "p1", frozenset({"admin", "member"}), "req-2")

#: nova 2013.1's admin-only actions but lock and unlock, the owner's since nova 2013.2
ADMIN_ONLY = (
    "migrate",
    "resetNetwork",
    "injectNetworkInfo",
    "os-migrateLive",
    "os-resetState",
    "unlock_override",
)
OWNERS = ("pause", "unpause", "suspend", "resume", "createBackup", "lock", "unlock")


@pytest.mark.parametrize("operation", ADMIN_ONLY)
def test_nova_admin_only_actions_are_refused_to_members(operation: str) -> None:
    policy = Policy()
    assert not policy.allows(MEMBER, operation)
    assert policy.allows(ADMIN, operation)
    with pytest.raises(NotPermitted, match=f"doesn't allow {operation} "):
        policy.enforce(MEMBER, operation)


@pytest.mark.parametrize("operation", OWNERS)
def test_admin_or_owner_actions_are_the_owners(operation: str) -> None:
    policy = Policy()
    assert policy.allows(MEMBER, operation)
    assert not policy.allows(MEMBER, operation, project_id="someone-else")
    assert policy.allows(ADMIN, operation, project_id="someone-else")


def test_every_action_the_gateway_dispatches_or_records_has_a_rule() -> None:
    """A dispatched action without a rule would be a 500; so would a recorded one."""
    assert ACTION_TABLE.names() <= set(OPERATIONS)
    assert {operation_of(action) for action in ACTIONS} - {"delete"} <= set(OPERATIONS)
    assert {"os-migrateLive", "servers:create", "OS-EXT-SRV-ATTR"} <= set(OPERATIONS)


def test_only_administrators_see_the_server_attributes_by_default() -> None:
    policy = Policy()
    assert policy.allows(MEMBER, "OS-EXT-STS")
    assert not policy.allows(MEMBER, "OS-EXT-SRV-ATTR")
    assert policy.allows(ADMIN, "OS-EXT-SRV-ATTR")


def test_an_inline_setting_overrides_the_rules_it_names_only() -> None:
    policy = Policy.parse('{"lock": "admin_or_owner", "pause": "admin", "resume": "nobody"}')
    assert policy.allows(MEMBER, "lock")
    assert not policy.allows(MEMBER, "pause")
    assert not policy.allows(ADMIN, "resume")  # nobody means nobody
    assert policy.allows(MEMBER, "suspend")  # untouched: the default
    assert not policy.allows(MEMBER, "migrate")
    assert policy.allows(MEMBER, "unlock")  # the owner's by default since nova 2013.2


def test_nova_2013_1s_admin_only_lock_is_one_setting_away() -> None:
    policy = Policy.parse('{"lock": "admin", "unlock": "admin"}')
    for operation in ("lock", "unlock"):
        assert not policy.allows(MEMBER, operation)
        assert policy.allows(ADMIN, operation)
        with pytest.raises(NotPermitted, match=f"doesn't allow {operation} "):
            policy.enforce(MEMBER, operation)


def test_a_file_setting_and_novas_spellings(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"migrate": "rule:admin_or_owner", "createBackup": "rule:admin_api"}')
    policy = Policy.parse(str(path))
    assert policy.rules["migrate"] is Rule.ADMIN_OR_OWNER
    assert policy.rules["createBackup"] is Rule.ADMIN
    assert Policy.parse("  ").rules == Policy().rules


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ('{"lock": "anyone"}', "unknown rule 'anyone'"),
        ('{"lock": 1}', "unknown rule 1"),
        ('{"fly": "admin"}', "unknown operation 'fly'"),
        ('["lock"]', "must be a JSON object"),
        ("{not json", "not valid JSON"),
        ("/no/such/policy.json", "cannot read the file"),
    ],
)
def test_a_bad_setting_is_refused_with_a_reason(setting: str, complaint: str) -> None:
    with pytest.raises(PolicyError, match=complaint):
        Policy.parse(setting)


def test_the_configured_policy_is_parsed_once_per_value() -> None:
    assert configured('{"lock": "admin"}') is configured('{"lock": "admin"}')


def _row(*, locked: bool) -> LockedServer:
    return LockedServer(
        id=uuid.uuid4(),
        tenant_id="p1",
        host="h1",
        vm_state="active",
        task_state=None,
        locked=locked,
        locked_by="bob" if locked else None,
        vcpus=1,
        ram_mb=512,
        disk_gb=1,
    )


@pytest.mark.parametrize(
    "operation",
    ["reboot", "servers:delete", "servers:metadata", "servers:update", "pause", "resetNetwork"],
)
def test_a_locked_server_refuses_state_changes_to_members_only(operation: str) -> None:
    with pytest.raises(Conflict, match="is locked"):
        check_unlocked(MEMBER, operation, _row(locked=True))
    check_unlocked(ADMIN, operation, _row(locked=True))
    check_unlocked(MEMBER, operation, _row(locked=False))


@pytest.mark.parametrize("operation", ["unlock", "lock", "createImage", "createBackup"])
def test_a_lock_does_not_refuse_what_changes_nothing_or_unlocks(operation: str) -> None:
    check_unlocked(MEMBER, operation, _row(locked=True))


def test_a_hard_reboot_is_the_reboot_operation() -> None:
    assert operation_of("reboot_hard") == "reboot"
    assert operation_of("pause") == "pause"
