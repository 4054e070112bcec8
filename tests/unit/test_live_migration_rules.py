"""The rules of os-migrateLive that need no running system: the request body (JSON and the
XML form's texts), the state it may start from, its messages, and the hosts `stratus up`
runs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from api_gateway.http.faults import BadRequest
from api_gateway.http.xml_body import parse as parse_xml
from api_gateway.schemas.live_migration import MISSING, live_migrate
from compute_agent.virt.factory import up_drivers, up_hosts
from compute_agent.virt.fake import FakeDriver
from compute_agent.virt.libvirt import mock_nodes
from shared import messages
from shared.config import Settings
from shared.messages import (
    CleanUpLiveMigration,
    CommandReport,
    FinishLiveMigration,
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
    LiveMigrate,
    LiveMigrateServer,
    PrepareLiveMigration,
    RecoverLiveMigration,
    RollBackLiveMigration,
)
from shared.states import ACTIONS, Status, TaskState, allowed, v2_status
from tests.conformance.support import SAMPLES
from tests.support.missing import LIBVIRT_BINDING


def _xml(host: str, block: str, over_commit: str) -> object:
    body = parse_xml(
        f"<os-migrateLive><host>{host}</host><block_migration>{block}</block_migration>"
        f"<disk_over_commit>{over_commit}</disk_over_commit></os-migrateLive>".encode()
    )
    return body["os-migrateLive"]


# --- the request body ------------------------------------------------------------------------


def test_the_json_form_gives_booleans() -> None:
    request = live_migrate({"host": "h2", "block_migration": True, "disk_over_commit": False})
    assert (request.host, request.block_migration, request.disk_over_commit) == ("h2", True, False)


@pytest.mark.parametrize(
    ("block", "over_commit", "expected"),
    [
        ("false", "false", (False, False)),
        ("true", "false", (True, False)),
        ("False", "TRUE", (False, True)),
        (" true ", "false", (True, False)),
    ],
)
def test_the_xml_form_s_texts_become_booleans(
    block: str, over_commit: str, expected: tuple[bool, bool]
) -> None:
    """ "false" is false: the reference implementation passed the text on, and it was true."""
    request = live_migrate(_xml("h2", block, over_commit))
    assert (request.block_migration, request.disk_over_commit) == expected


def test_the_guide_s_samples_parse_in_both_forms() -> None:
    json_sample = (SAMPLES / "3.20-live-migrate-server-request.json").read_text()
    xml_sample = (SAMPLES / "3.21-live-migrate-server-request.xml").read_bytes()
    from_json = live_migrate(json.loads(json_sample)["os-migrateLive"])
    from_xml = live_migrate(parse_xml(xml_sample)["os-migrateLive"])
    assert from_json.host == "0443e9a1254044d8b99f35eace132080"
    assert from_xml.host == "6217bf142bb3491995f966af999f9f23"
    for request in (from_json, from_xml):
        assert (request.block_migration, request.disk_over_commit) == (False, False)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "h2",
        [],
        {},
        {"host": "h2", "disk_over_commit": False},
        {"host": "h2", "block_migration": False},
        {"host": "", "block_migration": False, "disk_over_commit": False},
        {"host": None, "block_migration": False},
        {"host": "h2", "block_migration": None, "disk_over_commit": False},
    ],
)
def test_a_missing_member_is_answered_as_nova_answered(value: object) -> None:
    with pytest.raises(BadRequest) as refused:
        live_migrate(value)
    assert refused.value.message == MISSING == "host and block_migration must be specified."


@pytest.mark.parametrize(
    "value",
    [
        {"host": None, "block_migration": False, "disk_over_commit": False},
        {"block_migration": False, "disk_over_commit": True},
    ],
)
def test_without_a_host_the_scheduler_picks_one(value: dict[str, object]) -> None:
    """nova 2013.2: ``host`` null or left out (``nova live-migration SERVER``, openstacksdk)."""
    request = live_migrate(value)
    assert request.host is None
    assert (request.block_migration, request.disk_over_commit) == (
        False,
        value["disk_over_commit"],
    )


def test_an_xml_body_without_a_host_leaves_it_to_the_scheduler() -> None:
    body = parse_xml(
        b"<os-migrateLive><block_migration>true</block_migration>"
        b"<disk_over_commit>false</disk_over_commit></os-migrateLive>"
    )
    request = live_migrate(body["os-migrateLive"])
    assert (request.host, request.block_migration, request.disk_over_commit) == (
        None,
        True,
        False,
    )


def test_an_empty_xml_member_is_missing() -> None:
    with pytest.raises(BadRequest, match="must be specified"):
        live_migrate(_xml("h2", "", "false"))


@pytest.mark.parametrize(
    "value",
    [
        {"host": "h2", "block_migration": "perhaps", "disk_over_commit": False},
        {"host": "h2", "block_migration": 1, "disk_over_commit": False},
        {"host": "h2", "block_migration": False, "disk_over_commit": "2"},
        {"host": "h2", "block_migration": False, "disk_over_commit": {"a": 1}},
        {"host": 42, "block_migration": False, "disk_over_commit": False},
        {"host": "h" * 256, "block_migration": False, "disk_over_commit": False},
    ],
)
def test_anything_but_booleans_and_a_host_name_is_a_bad_request(value: object) -> None:
    with pytest.raises(BadRequest, match="Invalid input for field/attribute"):
        live_migrate(value)


# --- state and messages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vm", "task", "ok"),
    [
        ("active", None, True),
        ("active", "rebooting", False),
        ("active", "migrating", False),
        ("paused", None, False),
        ("stopped", None, False),
        ("resized", None, False),
        ("building", "spawning", False),
        ("error", None, False),
    ],
)
def test_only_an_idle_active_server_may_be_live_migrated(
    vm: str, task: str | None, ok: bool
) -> None:
    assert allowed("os-migrateLive", vm, task) is ok


def test_a_live_migrating_server_is_migrating_and_active_underneath() -> None:
    assert ACTIONS["os-migrateLive"].task is TaskState.MIGRATING
    assert v2_status("active", "migrating") is Status.MIGRATING
    assert v2_status("active", None) is Status.ACTIVE


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
        LiveMigrateServer(action_id=uuid.uuid4(), migration_id=uuid.uuid4()),
        PrepareLiveMigration(
            action_id=uuid.uuid4(),
            migration_id=uuid.uuid4(),
            instance=_spec(),
            block_migration=True,
        ),
        LiveMigrate(
            action_id=uuid.uuid4(),
            migration_id=uuid.uuid4(),
            instance=_spec(),
            dest_host="b",
            dest_uri="test:///tmp/b.xml",
            block_migration=False,
        ),
        FinishLiveMigration(
            action_id=uuid.uuid4(), migration_id=uuid.uuid4(), instance=_spec(), handover="<x/>"
        ),
        CleanUpLiveMigration(
            action_id=uuid.uuid4(),
            migration_id=uuid.uuid4(),
            instance=_spec(),
            block_migration=False,
        ),
        RecoverLiveMigration(action_id=uuid.uuid4(), migration_id=uuid.uuid4(), instance=_spec()),
        RollBackLiveMigration(
            action_id=uuid.uuid4(),
            migration_id=uuid.uuid4(),
            instance=_spec(),
            block_migration=True,
        ),
        CommandReport(
            action_id=uuid.uuid4(),
            migration_id=uuid.uuid4(),
            command="live_migrate",
            task_state="migrating",
            host="a",
            success=True,
            power_state=1,
            handover="<domain/>",
        ),
    ],
)
def test_live_migration_messages_survive_the_wire(message: messages.Message) -> None:
    received = messages.parse(messages.encode(message))
    assert type(received) is type(message)
    assert received == message


def test_a_report_names_a_known_command() -> None:
    with pytest.raises(ValueError, match="command"):
        CommandReport(
            action_id=uuid.uuid4(),
            migration_id=uuid.uuid4(),
            command="teleport",
            task_state="migrating",
            host="a",
            success=True,
            power_state=1,
        )


# --- the hosts of `stratus up` ---------------------------------------------------------------


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings.model_validate({"data_dir": tmp_path, "host": "box", **values})


def test_up_runs_two_hosts_by_default(tmp_path: Path) -> None:
    assert up_hosts(_settings(tmp_path), "fake") == ["box-1", "box-2"]
    assert up_hosts(_settings(tmp_path, up_agents=3), "fake") == ["box-1", "box-2", "box-3"]
    assert up_hosts(_settings(tmp_path, up_agents=1), "fake") == ["box"]


def test_up_runs_one_host_on_a_real_hypervisor(tmp_path: Path) -> None:
    real = _settings(tmp_path, libvirt_uri="qemu:///system")
    assert up_hosts(real, "libvirt") == ["box"]
    assert up_hosts(_settings(tmp_path), "libvirt") == ["box-1", "box-2"]


async def test_up_gives_each_fake_host_its_own_hypervisor(tmp_path: Path) -> None:
    drivers = up_drivers(_settings(tmp_path, virt_driver="fake"))
    assert list(drivers) == ["box-1", "box-2"]
    for host, driver in drivers.items():
        assert isinstance(driver, FakeDriver)
        await driver.init_host(host)
    try:
        uris = [(await d.capacity()).hypervisor_uri for d in drivers.values()]
        assert uris == ["fake://box-1", "fake://box-2"]
    finally:
        for driver in drivers.values():
            await driver.close()


def test_up_gives_each_test_hypervisor_host_a_node_file_of_its_own(tmp_path: Path) -> None:
    pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    drivers = up_drivers(_settings(tmp_path, virt_driver="libvirt"))
    uris = {host: d.uri for host, d in drivers.items() if isinstance(d, LibvirtDriver)}
    node = tmp_path.resolve() / "hypervisors"
    assert uris == {
        "box-1": f"test://{node}/box-1.xml",
        "box-2": f"test://{node}/box-2.xml",
    }
    assert (node / "box-1.xml").read_text() == mock_nodes.NODE_XML
    single = up_drivers(_settings(tmp_path, virt_driver="libvirt", up_agents=1))
    assert [d.uri for d in single.values() if isinstance(d, LibvirtDriver)] == ["test:///default"]


def test_node_files_are_named_safely(tmp_path: Path) -> None:
    uri = mock_nodes.node_uri(tmp_path, "../evil host")
    assert uri == f"test://{tmp_path.resolve()}/.._evil_host.xml"
