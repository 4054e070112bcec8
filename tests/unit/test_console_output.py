"""os-console-output without a system: the length a body asks for, the lines a host cuts, the
fake guest's boot, both drivers' logs, the agent's answers and what the gateway writes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from api_gateway.http.faults import BadRequest
from api_gateway.schemas import console_output as schema
from api_gateway.views.console_output import printable
from compute_agent.consoles import ConsoleResponder, last_lines
from compute_agent.virt import fake_guest
from compute_agent.virt.driver import MAX_CONSOLE_BYTES, DriverError
from compute_agent.virt.fake import FakeDriver
from compute_agent.virt.libvirt import console_log
from shared.messages import (
    ConsoleOutputAnswer,
    FlavorSpec,
    GetConsoleOutput,
    ImageSpec,
    InstanceSpec,
)
from shared.states import PowerState
from tests.support.missing import LIBVIRT_BINDING


def _instance(ram_mb: int = 512) -> InstanceSpec:
    return InstanceSpec(
        server_id=uuid.uuid4(),
        name="web",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=ram_mb, disk_gb=1),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


# --- the length asked for ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "length"),
    [
        (None, None),
        ({}, None),
        ({"length": None}, None),
        ({"length": -1}, None),
        ({"length": "-1"}, None),
        ({"length": 0}, 0),
        ({"length": 5}, 5),
        ({"length": "5"}, 5),
        ({"length": "007"}, 7),
        ({"length": 10**40}, schema.MOST),
    ],
)
def test_a_length_is_an_integer_or_its_text(value: object, length: int | None) -> None:
    assert schema.console_output(value) == length


@pytest.mark.parametrize(
    "value",
    [
        {"length": "abc"},
        {"length": -2},
        {"length": "-2"},
        {"length": 1.5},
        {"length": 2.0},
        {"length": "1.5"},
        {"length": "+2"},
        {"length": " 2"},
        {"length": ""},
        {"length": True},
        {"length": {}},
        {"length": "1" * 5000},
        {"length": 1, "other": 1},
        "abc",
        [],
        5,
    ],
)
def test_anything_else_is_400(value: object) -> None:
    with pytest.raises(BadRequest):
        schema.console_output(value)


# --- the lines a host cuts -----------------------------------------------------------------


def test_the_last_lines_keep_their_ends_and_a_final_newline_starts_none() -> None:
    log = "one\ntwo\r\nthree\n"
    assert last_lines(log, None) == log
    assert last_lines(log, 1) == "three\n"
    assert last_lines(log, 2) == "two\r\nthree\n"
    assert last_lines(log, 3) == log
    assert last_lines(log, 100) == log
    assert last_lines(log, 0) == ""
    assert last_lines("", 5) == ""


def test_a_prompt_without_a_line_end_is_the_last_line() -> None:
    log = "booting\nlogin: "
    assert last_lines(log, 1) == "login: "
    assert last_lines(log, 2) == log
    assert last_lines("\n\n", 1) == "\n"  # empty lines are lines


# --- the fake guest ------------------------------------------------------------------------


def test_a_boot_ends_at_the_login_prompt_of_the_test_guest() -> None:
    lines = fake_guest.boot_lines(_instance(ram_mb=2048))
    assert lines[-1] == fake_guest.LOGIN_PROMPT == "stratus-guest login:"
    assert lines[-2] == fake_guest.ISSUE
    assert "stratus-guest: up=0.00 mem=2097152kB disk=2097152s" in lines
    assert all("\n" not in line for line in lines)


def test_a_part_added_to_the_boot_is_printed_before_the_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def config_drive(instance: InstanceSpec) -> list[str]:
        return [f"stratus-guest: config drive of {instance.name}"]

    before = fake_guest.BOOT[:-1]
    monkeypatch.setattr(fake_guest, "BOOT", (*before, config_drive, fake_guest.BOOT[-1]))
    lines = fake_guest.boot_lines(_instance())
    assert lines[-3:] == [
        "stratus-guest: config drive of web",
        fake_guest.ISSUE,
        "stratus-guest login:",
    ]


# --- the fake driver -----------------------------------------------------------------------


@pytest.fixture
async def fake() -> FakeDriver:
    driver = FakeDriver()
    await driver.init_host("h1")
    return driver


async def test_the_fake_guest_prints_its_boot_at_every_start_and_nothing_when_resumed(
    fake: FakeDriver,
) -> None:
    instance = _instance()
    name = instance.domain_name
    boot = "".join(f"{line}\n" for line in fake_guest.boot_lines(instance))
    await fake.spawn(instance, "pw")
    assert await fake.console_output(name) == boot
    await fake.reboot(instance, hard=False, action_id=uuid.uuid4())
    await fake.power_off(name)
    assert await fake.console_output(name) == boot * 2  # a stopped guest keeps its log
    await fake.power_on(instance)
    await fake.suspend(name)
    await fake.resume(name)
    await fake.rebuild(instance, "pw", action_id=uuid.uuid4())
    assert await fake.console_output(name) == boot * 4
    assert fake.domains[name].boots == 4
    await fake.destroy(name)
    with pytest.raises(DriverError):
        await fake.console_output(name)


async def test_the_fake_log_is_at_most_its_last_100_kib(fake: FakeDriver) -> None:
    instance = _instance()
    await fake.spawn(instance, "pw")
    for _ in range(400):
        fake.domains[instance.domain_name].boot()
    output = await fake.console_output(instance.domain_name)
    assert len(output.encode()) <= MAX_CONSOLE_BYTES
    assert output.endswith(f"{fake_guest.LOGIN_PROMPT}\n")


async def test_the_agent_cuts_the_lines_and_refuses_a_server_not_here(fake: FakeDriver) -> None:
    instance = _instance()
    await fake.spawn(instance, "pw")
    responder = ConsoleResponder(fake)
    call = GetConsoleOutput(request_id="req-1", domain_name=instance.domain_name, length=1)
    answer = await responder(call)
    assert isinstance(answer, ConsoleOutputAnswer)
    assert (answer.output, answer.refused, answer.request_id) == (
        f"{fake_guest.LOGIN_PROMPT}\n",
        None,
        "req-1",
    )
    elsewhere = await responder(GetConsoleOutput(domain_name=f"instance-{uuid.uuid4()}"))
    assert isinstance(elsewhere, ConsoleOutputAnswer)
    assert elsewhere.refused == "not_ready" and "is not on host" in elsewhere.detail


# --- the log file --------------------------------------------------------------------------


def test_a_log_file_is_read_from_its_end(tmp_path: Path) -> None:
    path = tmp_path / "server" / "console.log"
    assert console_log.read_end(path) == ""  # nothing printed yet
    console_log.append(path, ["one", "two"])
    assert path.read_bytes() == b"one\r\ntwo\r\n"
    path.write_bytes(b"x" * MAX_CONSOLE_BYTES + b"\xff\nend\n")
    end = console_log.read_end(path)
    assert len(end.encode("utf-8")) <= MAX_CONSOLE_BYTES + 2  # U+FFFD is 3 bytes, not 1
    assert end.endswith("x\ufffd\nend\n")


# --- what the gateway writes ---------------------------------------------------------------


def test_control_characters_go_but_tabs_and_newlines_stay() -> None:
    assert printable("a\tb\r\nc\x1b[0m\x00\x7f é\n") == "a\tb\nc[0m\x7f é\n"


# --- libvirt's test hypervisor -------------------------------------------------------------


async def test_the_test_hypervisor_s_driver_logs_the_boots_it_starts(tmp_path: Path) -> None:
    pytest.importorskip("libvirt", reason=LIBVIRT_BINDING)
    from compute_agent.virt.libvirt.driver import LibvirtDriver

    driver = LibvirtDriver("test:///default", tmp_path / "instances")
    await driver.init_host("test-host")
    instance = _instance()
    name = instance.domain_name
    log = tmp_path / "instances" / str(instance.server_id) / "console.log"
    boot = "".join(f"{line}\r\n" for line in fake_guest.boot_lines(instance))
    try:
        await driver.spawn(instance, "pw")
        assert await driver.console_output(name) == boot == log.read_bytes().decode()
        await driver.reboot(instance, hard=True, action_id=uuid.uuid4())
        await driver.suspend(name)
        assert await driver.resume(name) == PowerState.RUNNING
        assert await driver.console_output(name) == boot * 2
        await driver.destroy(name)
        assert not log.exists() and not log.parent.exists()
        with pytest.raises(DriverError):
            await driver.console_output(name)
    finally:
        await driver.destroy(name)
        await driver.close()
