"""Sealed secrets (shared/sealing.py): what seals opens, only with its key and for its message,
no message can carry a password in clear text, and the roles refuse to start without a key."""

from __future__ import annotations

import base64
import json
import stat
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from shared import messages
from shared.config import Settings
from shared.messages import (
    BuildServer,
    ChangePassword,
    FlavorSpec,
    ImageSpec,
    InstanceSpec,
    RebuildServer,
    SpawnServer,
)
from shared.sealing import Keyring, SealingError, UnsealError, generate_key, key_id, local_key
from stratus import cli
from stratus.runtime import require_keyring, with_local_message_key

PASSWORD = "hunter2-Ünïcode-pw"


def _keyring() -> Keyring:
    return Keyring.from_setting(generate_key())


def _spec(server_id: uuid.UUID) -> InstanceSpec:
    return InstanceSpec(
        server_id=server_id,
        name="web",
        flavor=FlavorSpec(id="1", name="m1.tiny", vcpus=1, ram_mb=512, disk_gb=1),
        image=ImageSpec(id=uuid.uuid4(), name="cirros"),
    )


# --- sealing and opening ---------------------------------------------------------------------


@pytest.mark.parametrize("secret", [PASSWORD, "", "x" * 4096])
def test_what_is_sealed_opens_for_its_context(secret: str) -> None:
    keyring = _keyring()
    sealed = keyring.seal(secret, "ctx")
    assert sealed.startswith(f"sealed:v1:{keyring.sealing_key_id}:")
    assert keyring.unseal(sealed, "ctx") == secret
    if secret:
        assert secret not in sealed
    assert keyring.seal(secret, "ctx") != sealed  # a fresh nonce every time


def test_another_key_does_not_open_it_and_the_fault_names_both_keys() -> None:
    sealer, other = _keyring(), _keyring()
    sealed = sealer.seal(PASSWORD, "ctx")
    with pytest.raises(UnsealError) as refused:
        other.unseal(sealed, "ctx")
    message = str(refused.value)
    assert sealer.sealing_key_id in message and other.sealing_key_id in message
    assert "STRATUS_MESSAGE_KEY" in message
    assert PASSWORD not in message


def test_another_context_or_an_altered_value_does_not_open() -> None:
    keyring = _keyring()
    sealed = keyring.seal(PASSWORD, "ctx")
    with pytest.raises(UnsealError, match="sealed for another message, or altered"):
        keyring.unseal(sealed, "other ctx")
    head, box = sealed.rsplit(":", 1)
    flipped = "A" if box[5] != "A" else "B"
    with pytest.raises(UnsealError, match="altered"):
        keyring.unseal(f"{head}:{box[:5]}{flipped}{box[6:]}", "ctx")
    with pytest.raises(UnsealError, match="not sealed"):
        keyring.unseal(PASSWORD, "ctx")


def test_a_rotation_opens_with_every_key_and_seals_with_the_first() -> None:
    old, new = generate_key(), generate_key()
    sealed_before = Keyring.from_setting(old).seal(PASSWORD, "ctx")
    during = Keyring.from_setting(f"{new}, {old}")
    assert during.unseal(sealed_before, "ctx") == PASSWORD
    sealed_during = during.seal(PASSWORD, "ctx")
    assert f":{during.sealing_key_id}:" in sealed_during
    assert Keyring.from_setting(new).unseal(sealed_during, "ctx") == PASSWORD


def test_signatures_verify_under_any_key_of_the_ring_and_nothing_else() -> None:
    old, new = generate_key(), generate_key()
    signed = Keyring.from_setting(old).sign("GET image x until 1")
    rotated = Keyring.from_setting(f"{new},{old}")
    assert rotated.verify("GET image x until 1", signed)  # an old key still verifies
    assert not rotated.verify("GET image y until 1", signed)  # another text
    assert not Keyring.from_setting(new).verify("GET image x until 1", signed)  # another key
    kid, _, mac = signed.partition(".")
    assert not rotated.verify("GET image x until 1", f"{kid}.{'0' * len(mac)}")
    assert not rotated.verify("GET image x until 1", "no signature")
    assert rotated.sign("t").startswith(f"{key_id(base64.urlsafe_b64decode(new))}.")


def test_keys_are_taken_in_either_base64_alphabet_padded_or_not() -> None:
    raw = bytes(range(250, 256)) + bytes(26)  # encodes with + and / (- and _ urlsafe)
    expected = key_id(raw)
    for text in (
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(raw).decode(),
        f"  {base64.b64encode(raw).decode()}\n",
    ):
        assert Keyring.from_setting(SecretStr(text)).sealing_key_id == expected


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("CHANGE-ME", "not base64"),
        (base64.b64encode(bytes(16)).decode(), "32 bytes in base64 (this one is 16)"),
        ("not base64 at all!", "not base64"),
        (" , ", "empty"),
    ],
)
def test_a_malformed_key_is_refused_without_repeating_it(value: str, complaint: str) -> None:
    with pytest.raises(SealingError) as refused:
        Keyring.from_setting(SecretStr(value))
    message = str(refused.value)
    assert complaint in message
    assert "STRATUS_MESSAGE_KEY" in message and "stratus message-key" in message
    assert value.strip(" ,") not in message or not value.strip(" ,")


def test_no_key_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(SealingError, match=r"STRATUS_MESSAGE_KEY must be set.*message-key"):
        Keyring.from_setting(None)


# --- the messages ----------------------------------------------------------------------------


def test_a_password_is_bound_to_its_kind_of_command_its_server_and_its_action() -> None:
    keyring = _keyring()
    server_id, action_id = uuid.uuid4(), uuid.uuid4()
    sealed = ChangePassword.seal_admin_pass(
        keyring, PASSWORD, server_id=server_id, action_id=action_id
    )
    change = ChangePassword(
        server_id=server_id, action_id=action_id, domain_name="instance-x", admin_pass=sealed
    )
    assert change.open_admin_pass(keyring) == PASSWORD
    replays = [
        RebuildServer(
            server_id=server_id, action_id=action_id, instance=_spec(server_id), admin_pass=sealed
        ),
        change.model_copy(update={"server_id": uuid.uuid4()}),
        change.model_copy(update={"action_id": uuid.uuid4()}),
    ]
    for replay in replays:
        with pytest.raises(UnsealError):
            replay.open_admin_pass(keyring)


def test_a_builds_password_opens_in_the_spawn_the_conductor_forwards_it_in() -> None:
    keyring = _keyring()
    server_id, action_id = uuid.uuid4(), uuid.uuid4()
    build = BuildServer(
        server_id=server_id,
        action_id=action_id,
        instance=_spec(server_id),
        admin_pass=BuildServer.seal_admin_pass(
            keyring, PASSWORD, server_id=server_id, action_id=action_id
        ),
    )
    spawn = SpawnServer(  # as conductor/service.py builds it: the value untouched
        request_id=build.request_id,
        server_id=build.instance.server_id,
        action_id=build.action_id,
        instance=build.instance,
        admin_pass=build.admin_pass,
    )
    assert spawn.open_admin_pass(keyring) == PASSWORD


def test_no_message_takes_a_password_in_clear_text_nor_repeats_it_in_the_error() -> None:
    server_id = uuid.uuid4()
    with pytest.raises(ValidationError) as refused:
        ChangePassword(
            server_id=server_id, action_id=uuid.uuid4(), domain_name="x", admin_pass=PASSWORD
        )
    assert "must be sealed" in str(refused.value) and PASSWORD not in str(refused.value)
    wire = json.dumps(
        {
            "type": "rebuild_server",
            "server_id": str(server_id),
            "action_id": str(uuid.uuid4()),
            "admin_pass": PASSWORD,
            "instance": _spec(server_id).model_dump(mode="json"),
        }
    )
    with pytest.raises(ValidationError) as unparsed:
        messages.parse(wire)
    assert PASSWORD not in str(unparsed.value)


@pytest.mark.parametrize("kind", [BuildServer, SpawnServer, RebuildServer, ChangePassword])
def test_the_wire_never_carries_the_clear_text(kind: type[messages.WithAdminPass]) -> None:
    keyring = _keyring()
    server_id, action_id = uuid.uuid4(), uuid.uuid4()
    fields = {"domain_name": "x"} if kind is ChangePassword else {"instance": _spec(server_id)}
    message = kind(
        server_id=server_id,
        action_id=action_id,
        admin_pass=kind.seal_admin_pass(
            keyring, PASSWORD, server_id=server_id, action_id=action_id
        ),
        **fields,  # type: ignore[arg-type]
    )
    body = messages.encode(message)
    assert PASSWORD.encode() not in body
    assert PASSWORD not in repr(message)
    received = messages.parse(body)
    assert isinstance(received, kind)
    assert received.open_admin_pass(keyring) == PASSWORD


# --- the key of `stratus up`, and the roles that need one -------------------------------------


def test_stratus_up_makes_its_key_once_private_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "data" / "message.key"
    first = local_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Keyring.from_setting(first)
    assert local_key(path).get_secret_value() == first.get_secret_value()
    path.chmod(0o644)
    assert local_key(path).get_secret_value() == first.get_secret_value()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("garbage\n")
    with pytest.raises(SealingError, match="does not hold a message key"):
        local_key(path)


def test_stratus_up_uses_the_setting_or_its_data_directorys_key(tmp_path: Path) -> None:
    given = generate_key()
    settings = Settings(data_dir=tmp_path, message_key=given)
    assert with_local_message_key(settings) is settings
    made = with_local_message_key(Settings(data_dir=tmp_path, message_key=None))
    assert made.message_key is not None
    assert (
        made.message_key.get_secret_value()
        == local_key(tmp_path / "message.key").get_secret_value()
    )
    with pytest.raises(SystemExit, match="STRATUS_MESSAGE_KEY"):
        with_local_message_key(Settings(data_dir=tmp_path, message_key="CHANGE-ME"))


@pytest.mark.parametrize("value", [None, "CHANGE-ME"])
def test_gateways_and_agents_refuse_to_start_without_a_usable_key(value: str | None) -> None:
    with pytest.raises(SystemExit) as refused:
        require_keyring(Settings(message_key=value))
    message = str(refused.value)
    assert message.startswith("stratus: ") and "\n" not in message
    assert "STRATUS_MESSAGE_KEY" in message and "stratus message-key" in message


@pytest.mark.parametrize("role", ["api", "agent"])
def test_the_role_commands_stop_at_once_without_a_key(
    role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRATUS_MESSAGE_KEY", raising=False)
    monkeypatch.delenv("STRATUS_CONFIG_FILE", raising=False)
    with pytest.raises(SystemExit, match="STRATUS_MESSAGE_KEY must be set"):
        cli.main([role])


def test_stratus_message_key_prints_a_fresh_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["message-key"])
    first = capsys.readouterr().out.strip()
    cli.main(["message-key"])
    second = capsys.readouterr().out.strip()
    assert first != second
    assert len(base64.urlsafe_b64decode(first)) == 32
    Keyring.from_setting(first)
