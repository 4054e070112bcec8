"""The extensions' commands of the clients (issue 13): key pairs (``openstack keypair``, and a
server built with ``--key-name``), quotas (``openstack quota show/set`` and a member's
``/limits``), services (``openstack compute service list/set``) and a live migration whose
target the scheduler picks (``nova live-migration SERVER``).

Key pairs need no Keystone: they run against `stratus up` (noauth). The administrators'
commands look projects up by name and need Keystone's catalog: they run against the
Keystone-run cloud, as its administrator (``admin``, of the ``admin`` project) or as the
administrator acting in ``demo``'s project (``admin_in_demo``)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from compute_agent.virt.factory import libvirt_available
from shared.db import seed
from tests.clients.cli import CommandFailed, as_json, eventually, listing, openstack, table
from tests.clients.conftest import KEYSTONE_HOSTS, KeystoneCloud
from tests.support.missing import LIBVIRT_BINDING

IMAGE_NAME = seed.DEFAULT_IMAGES[0][0]


def openstack_json(clouds_yaml: Path, cloud: str, *args: str) -> Any:
    return as_json(openstack(clouds_yaml, cloud, *args, "-f", "json"))


# --- key pairs, against `stratus up` ----------------------------------------------------------


def _public_key() -> tuple[str, str]:
    """A new OpenSSH ed25519 public key, and its fingerprint as nova computes it (the MD5 of
    the key's blob, in colon-separated hex)."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    digest = hashlib.md5(base64.b64decode(line.split()[1]), usedforsecurity=False).hexdigest()
    return line.decode(), ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def test_keypair_create_import_list_show_and_delete(noauth_clouds: Path, tmp_path: Path) -> None:
    generated = f"gen-{uuid.uuid4().hex[:6]}"
    # without --public-key the CLI (10) makes an ed25519 pair itself, imports its public
    # key and prints the private key (OpenSSH's format), nothing else
    private_key = openstack(noauth_clouds, "alice", "keypair", "create", generated)
    assert private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----"), private_key[:80]
    assert private_key.rstrip().endswith("-----END OPENSSH PRIVATE KEY-----")
    loaded = serialization.load_ssh_private_key(private_key.encode(), password=None)

    public_key, fingerprint = _public_key()
    key_file = tmp_path / "id_ed25519.pub"
    key_file.write_text(public_key + "\n")
    imported_name = f"imp-{uuid.uuid4().hex[:6]}"
    imported = openstack_json(
        noauth_clouds, "alice", "keypair", "create", "--public-key", str(key_file), imported_name
    )
    assert (imported["name"], imported["fingerprint"]) == (imported_name, fingerprint)

    listed = openstack_json(noauth_clouds, "alice", "keypair", "list")
    assert {k["Name"] for k in listed} == {generated, imported_name}
    assert {k["Name"]: k["Fingerprint"] for k in listed}[imported_name] == fingerprint
    # key pairs are the user's: bob, of the same project, has none
    assert openstack_json(noauth_clouds, "bob", "keypair", "list") == []

    shown = openstack_json(noauth_clouds, "alice", "keypair", "show", generated)
    assert shown["name"] == generated
    # the generated pair's public key is the private key's
    public = openstack(noauth_clouds, "alice", "keypair", "show", "--public-key", generated)
    expected = loaded.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert public.split()[:2] == expected.decode().split()[:2]
    public = openstack(noauth_clouds, "alice", "keypair", "show", "--public-key", imported_name)
    assert public.split()[:2] == public_key.split()[:2]

    with pytest.raises(CommandFailed, match=r"409|already exists"):
        openstack(noauth_clouds, "alice", "keypair", "create", generated)

    openstack(noauth_clouds, "alice", "keypair", "delete", generated, imported_name)
    assert openstack_json(noauth_clouds, "alice", "keypair", "list") == []
    with pytest.raises(CommandFailed):
        openstack(noauth_clouds, "alice", "keypair", "show", generated)


def test_server_create_with_a_key_name_shows_it(noauth_clouds: Path, tmp_path: Path) -> None:
    public_key, _ = _public_key()
    key_file = tmp_path / "id.pub"
    key_file.write_text(public_key + "\n")
    key_name = f"srv-{uuid.uuid4().hex[:6]}"
    openstack(noauth_clouds, "alice", "keypair", "create", "--public-key", str(key_file), key_name)
    created = openstack_json(
        noauth_clouds,
        "alice",
        "server",
        "create",
        "--image",
        IMAGE_NAME,
        "--flavor",
        "m1.tiny",
        "--key-name",
        key_name,
        "--wait",
        f"key-{uuid.uuid4().hex[:6]}",
    )
    try:
        assert (created["status"], created["key_name"]) == ("ACTIVE", key_name)
        shown = openstack_json(noauth_clouds, "alice", "server", "show", created["id"])
        assert shown["key_name"] == key_name
        # the server keeps its key's name after the key pair is gone (nova's key_name)
        openstack(noauth_clouds, "alice", "keypair", "delete", key_name)
        shown = openstack_json(noauth_clouds, "alice", "server", "show", created["id"])
        assert shown["key_name"] == key_name
    finally:
        openstack(noauth_clouds, "alice", "server", "delete", "--wait", created["id"])
    with pytest.raises(CommandFailed, match=r"Invalid key_name|400|404"):
        openstack(
            noauth_clouds,
            "alice",
            "server",
            "create",
            "--image",
            IMAGE_NAME,
            "--flavor",
            "m1.tiny",
            "--key-name",
            "no-such-key",
            "nokey",
        )


# --- administrators' commands, against the Keystone-run cloud --------------------------------


@pytest.fixture(scope="module")
def keystone_clouds(
    keystone_cloud: KeystoneCloud, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A clouds.yaml with one cloud per user of the Keystone cloud, its administrator too."""
    path = tmp_path_factory.mktemp("extension-clouds") / "clouds.yaml"
    return keystone_cloud.clouds_yaml(path, ("demo", "alt_demo", "admin", "admin_in_demo"))


def _quota(shown: Any, resource: str) -> int:
    """A resource's quota in ``openstack quota show -f json``: a list of rows
    (``Resource``/``Limit``) or a mapping, as the CLI's versions print it."""
    if isinstance(shown, list):
        (row,) = [r for r in shown if r["Resource"] == resource]
        return int(row["Limit"])
    return int(shown[resource])


def _max_total_instances(cloud: KeystoneCloud, user: str) -> int:
    limits = cloud.keystone.session(user).get(
        "/limits", endpoint_filter={"service_type": "compute"}
    )
    value: int = limits.json()["limits"]["absolute"]["maxTotalInstances"]
    return value


@pytest.mark.integration
def test_quota_show_and_set_by_an_administrator(
    keystone_cloud: KeystoneCloud, keystone_clouds: Path
) -> None:
    """A member reads its project's quotas; the administrator sets alt_demo's instances to 7
    (by the project's name) and the member's quota and /limits both say 7."""
    # the catalog has no volume or network service: the CLI shows the compute quotas alone
    own = openstack_json(keystone_clouds, "alt_demo", "quota", "show")
    before = _quota(own, "instances")
    assert before == _max_total_instances(keystone_cloud, "alt_demo")
    assert before != 7
    admin_view = openstack_json(keystone_clouds, "admin", "quota", "show", "--compute", "alt_demo")
    assert _quota(admin_view, "instances") == before
    with pytest.raises(CommandFailed, match=r"403|[Ff]orbidden|not authorized"):
        openstack(keystone_clouds, "alt_demo", "quota", "set", "--instances", "7", "alt_demo")
    openstack(keystone_clouds, "admin", "quota", "set", "--instances", "7", "alt_demo")
    try:
        shown = openstack_json(keystone_clouds, "alt_demo", "quota", "show")
        assert _quota(shown, "instances") == 7
        assert _quota(shown, "cores") == _quota(own, "cores")  # the others stay as they were
        shown = openstack_json(keystone_clouds, "admin", "quota", "show", "alt_demo")
        assert _quota(shown, "instances") == 7
        assert _max_total_instances(keystone_cloud, "alt_demo") == 7
        # demo's project is another's: untouched
        demo = openstack_json(keystone_clouds, "demo", "quota", "show", "--compute")
        assert _quota(demo, "instances") == before
    finally:
        openstack(keystone_clouds, "admin", "quota", "set", "--instances", str(before), "alt_demo")
    assert _max_total_instances(keystone_cloud, "alt_demo") == before


def _services(clouds: Path, *args: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = openstack_json(
        clouds, "admin", "compute", "service", "list", "--long", *args
    )
    return listed


@pytest.mark.integration
def test_compute_service_list_and_set(keystone_clouds: Path) -> None:
    services = _services(keystone_clouds)
    assert sorted((s["Binary"], s["Host"]) for s in services) == [
        ("nova-compute", host) for host in KEYSTONE_HOSTS
    ]
    for service in services:
        assert isinstance(service["ID"], int)
        assert (service["Zone"], service["Status"], service["State"]) == (
            "nova",
            "enabled",
            "up",
        )
        assert service["Disabled Reason"] is None
    ids = {s["Host"]: s["ID"] for s in services}
    assert len(set(ids.values())) == len(KEYSTONE_HOSTS)
    assert [s["Host"] for s in _services(keystone_clouds, "--service", "nova-compute")] == sorted(
        KEYSTONE_HOSTS
    )
    assert _services(keystone_clouds, "--service", "nova-scheduler") == []
    (host, other) = sorted(KEYSTONE_HOSTS)
    assert [s["Host"] for s in _services(keystone_clouds, "--host", host)] == [host]
    with pytest.raises(CommandFailed, match=r"403|[Ff]orbidden|not authorized"):
        openstack(keystone_clouds, "demo", "compute", "service", "list")

    # members cannot take a host out of scheduling
    with pytest.raises(CommandFailed, match="failed to set"):
        openstack(
            keystone_clouds, "demo", "compute", "service", "set", "--disable", host, "nova-compute"
        )
    assert {s["Host"]: s["Status"] for s in _services(keystone_clouds)}[host] == "enabled"
    try:
        openstack(
            keystone_clouds, "admin", "compute", "service", "set", "--disable", host, "nova-compute"
        )
        shown = {s["Host"]: s for s in _services(keystone_clouds)}
        assert (shown[host]["Status"], shown[host]["Disabled Reason"]) == ("disabled", None)
        assert shown[other]["Status"] == "enabled"
        openstack(
            keystone_clouds,
            "admin",
            "compute",
            "service",
            "set",
            "--disable",
            "--disable-reason",
            "firmware upgrade",
            host,
            "nova-compute",
        )
        shown = {s["Host"]: s for s in _services(keystone_clouds)}
        assert (shown[host]["Status"], shown[host]["Disabled Reason"]) == (
            "disabled",
            "firmware upgrade",
        )
        with pytest.raises(CommandFailed, match="failed to set"):
            openstack(
                keystone_clouds,
                "admin",
                "compute",
                "service",
                "set",
                "--disable",
                "no-such-host",
                "nova-compute",
            )
    finally:
        openstack(
            keystone_clouds, "admin", "compute", "service", "set", "--enable", host, "nova-compute"
        )
    shown = {s["Host"]: s for s in _services(keystone_clouds)}
    assert (shown[host]["Status"], shown[host]["Disabled Reason"]) == ("enabled", None)
    # the ids are the services', stable through the updates
    assert {h: s["ID"] for h, s in shown.items()} == ids


@pytest.mark.integration
def test_nova_service_disable_with_a_reason(keystone_cloud: KeystoneCloud) -> None:
    """``nova service-disable --reason`` (disable-log-reason); ``service-list`` shows the
    ids and the reason."""
    host = sorted(KEYSTONE_HOSTS)[1]
    try:
        (disabled,) = listing(
            keystone_cloud.nova("admin", "service-disable", "--reason", "rack move", host)
        )
        assert (disabled["Host"], disabled["Status"], disabled["Disabled Reason"]) == (
            host,
            "disabled",
            "rack move",
        )
        listed = {s["Host"]: s for s in listing(keystone_cloud.nova("admin", "service-list"))}
        assert (listed[host]["Status"], listed[host]["Disabled Reason"]) == (
            "disabled",
            "rack move",
        )
        assert all(s["Id"].isdigit() for s in listed.values())
    finally:
        keystone_cloud.nova("admin", "service-enable", host)
    listed = {s["Host"]: s for s in listing(keystone_cloud.nova("admin", "service-list"))}
    assert (listed[host]["Status"], listed[host]["Disabled Reason"]) == ("enabled", "-")


# --- a live migration whose target the scheduler picks ----------------------------------------


@pytest.fixture
def demo_server(keystone_cloud: KeystoneCloud) -> Iterator[str]:
    shown = table(
        keystone_cloud.nova(
            "demo",
            "boot",
            "--image",
            IMAGE_NAME,
            "--flavor",
            "m1.tiny",
            "--poll",
            f"lm-{uuid.uuid4().hex[:6]}",
        )
    )
    server_id = shown["id"]
    yield server_id
    keystone_cloud.nova("demo", "delete", server_id)

    def gone() -> bool:
        try:
            keystone_cloud.nova("demo", "show", server_id)
        except CommandFailed:
            return True
        return False

    eventually(gone, f"{server_id} deleted")


@pytest.mark.integration
@pytest.mark.skipif(
    not libvirt_available(),
    reason=f"live migration between agent processes needs {LIBVIRT_BINDING}",
)
def test_live_migration_without_a_host_goes_where_the_scheduler_says(
    keystone_cloud: KeystoneCloud, demo_server: str
) -> None:
    def shown() -> dict[str, str]:
        return table(keystone_cloud.nova("admin_in_demo", "show", demo_server))

    source = shown()["OS-EXT-SRV-ATTR:host"]
    (target,) = [h for h in KEYSTONE_HOSTS if h != source]  # the only other host
    keystone_cloud.nova("admin_in_demo", "live-migration", demo_server)

    last: dict[str, str] = {}

    def moved() -> bool:
        nonlocal last
        last = shown()
        return (last["status"], last["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", target)

    try:
        eventually(moved, "the server runs on the other host", timeout_s=120)
    except AssertionError as exc:
        state = {k: last.get(k) for k in ("status", "OS-EXT-STS:task_state", "fault")}
        where = last.get("OS-EXT-SRV-ATTR:host")
        raise AssertionError(f"{exc}; last seen on {where}: {state}") from None
    migrations = listing(keystone_cloud.nova("admin", "migration-list"))
    assert (source, target) in {(m["Source Compute"], m["Dest Compute"]) for m in migrations}
