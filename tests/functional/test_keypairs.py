"""Key pairs (nova's os-keypairs): generated and imported ones, listed, shown and deleted;
names, keys and the quota checked as nova 2013.1 checked them; a user's, never another's; and
the shapes of nova's samples (samples/nova-2013.1/os-keypairs), in JSON and in XML."""

from __future__ import annotations

import base64
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from api_gateway.compute.keypairs import fingerprint_of
from stratus.system import System
from tests.support.client import ComputeClient
from tests.support.gateway import gateway_of_its_own
from tests.support.xml import JSON, XML, sample, send

KEYS = "/os-keypairs"
SAMPLES = "nova-2013.1/os-keypairs"


def _json_sample(name: str) -> Any:
    return json.loads(sample(f"{SAMPLES}/{name}"))


@pytest.fixture
def user_api(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    """A user of its own (key pairs are the user's): a fresh user in a fresh project."""
    return client_for(tenant, f"u{uuid.uuid4().hex[:10]}")


def _openssh(public_key: Any) -> str:
    return public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


async def test_a_generated_key_pair_is_created_listed_shown_and_deleted(
    user_api: ComputeClient,
) -> None:
    assert (await user_api.get(KEYS)).body == {"keypairs": []}
    reply = await user_api.post(KEYS, {"keypair": {"name": "my key_1-a"}})
    assert reply.status == 200, reply
    created = reply.body["keypair"]
    assert set(created) == set(_json_sample("keypairs-post-resp.json")["keypair"])
    assert created["name"] == "my key_1-a"
    assert created["user_id"] == user_api.token.split(":")[0]
    # an RSA 2048 key whose halves belong together, and nova's fingerprint of the public one
    assert created["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    private = load_pem_private_key(created["private_key"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    kind, blob, *_ = created["public_key"].split()
    assert f"{kind} {blob}" == _openssh(private.public_key())
    assert created["fingerprint"] == fingerprint_of(base64.b64decode(blob))

    listed = {"name", "public_key", "fingerprint"}
    expected = {k: created[k] for k in listed}
    reply = await user_api.get(KEYS)
    assert (reply.status, reply.body) == (200, {"keypairs": [{"keypair": expected}]})
    path = f"{KEYS}/my%20key_1-a"
    reply = await user_api.get(path)
    assert reply.status == 200
    # the show is nova 2013.1's whole record (tempest's get_keypair), less its row number
    shown = reply.body["keypair"]
    assert {k: shown[k] for k in listed} == expected
    assert shown["user_id"] == created["user_id"]
    assert (shown["deleted"], shown["updated_at"], shown["deleted_at"]) == (False, None, None)
    made = datetime.fromisoformat(shown["created_at"]).replace(tzinfo=UTC)  # nova's: no zone
    assert abs((datetime.now(UTC) - made).total_seconds()) < 60

    # the private key was given once: it is nowhere to be read again
    assert "private_key" not in json.dumps((await user_api.get(KEYS)).body)
    assert (await user_api.delete(path)).status == 202
    assert (await user_api.get(path)).status == 404
    assert (await user_api.delete(path)).status == 404
    assert (await user_api.get(KEYS)).body == {"keypairs": []}


async def test_nova_s_import_sample_gets_nova_s_fingerprint(user_api: ComputeClient) -> None:
    request = _json_sample("keypairs-import-post-req.json")
    expected = _json_sample("keypairs-import-post-resp.json")["keypair"]
    reply = await user_api.post(KEYS, request)
    assert reply.status == 200, reply
    assert reply.body["keypair"] == {**expected, "user_id": user_api.token.split(":")[0]}
    assert "private_key" not in reply.body["keypair"]


@pytest.mark.parametrize(
    "private",
    [
        pytest.param(lambda: ed25519.Ed25519PrivateKey.generate(), id="ssh-ed25519"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ecdsa-nistp256"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="ecdsa-nistp384"),
        pytest.param(
            lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), id="ssh-rsa"
        ),
    ],
)
async def test_openssh_public_keys_are_imported(
    user_api: ComputeClient, private: Callable[[], Any]
) -> None:
    public_key = _openssh(private().public_key()) + " me@laptop\n"  # as a .pub file has it
    reply = await user_api.post(KEYS, {"keypair": {"name": "k", "public_key": public_key}})
    assert reply.status == 200, reply
    blob = base64.b64decode(public_key.split()[1])
    assert reply.body["keypair"]["public_key"] == public_key
    assert reply.body["keypair"]["fingerprint"] == fingerprint_of(blob)


@pytest.mark.parametrize(
    "public_key",
    [
        "",
        "not a key",
        "ssh-rsa",
        "ssh-rsa !!!notbase64!!!",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q",  # ed25519
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA",  # truncated
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",  # a type not accepted
        "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        # two keys in one: a second authorized_keys line must never ride along
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q a\n"
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q b",
    ],
)
async def test_what_is_not_an_openssh_public_key_is_400(
    user_api: ComputeClient, public_key: str
) -> None:
    reply = await user_api.post(KEYS, {"keypair": {"name": "k", "public_key": public_key}})
    assert reply.status == 400, reply
    assert reply.body["badRequest"]["message"] == "Keypair data is invalid"
    assert (await user_api.get(KEYS)).body == {"keypairs": []}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"keypair": {"name": ""}}, "between 1 and 255"),
        ({"keypair": {"name": "x" * 256}}, "between 1 and 255"),
        ({"keypair": {"name": "dot.ted"}}, "unsafe characters"),
        ({"keypair": {"name": "slash/ed"}}, "unsafe characters"),
        ({"keypair": {"name": "ünïcode"}}, "unsafe characters"),
        ({"keypair": {"name": 5}}, "keypair/name"),
        ({"keypair": {}}, "keypair/name"),
        ({"keypair": {"name": "k", "public_key": 5}}, "keypair/public_key"),
        ({"keypair": {"name": "k", "extra": "x"}}, "keypair/extra"),
        ({"name": "k"}, "keypair"),
        ({}, "keypair"),
    ],
)
async def test_bad_names_and_bodies_are_400(user_api: ComputeClient, body: Any, why: str) -> None:
    reply = await user_api.post(KEYS, body)
    assert reply.status == 400, reply
    assert why in reply.body["badRequest"]["message"]
    assert (await user_api.get(KEYS)).body == {"keypairs": []}


async def test_names_at_the_limits_are_accepted(user_api: ComputeClient) -> None:
    for name in ("x" * 255, "a", "A b_c-9 "):
        assert (await user_api.post(KEYS, {"keypair": {"name": name}})).status == 200
    names = {k["keypair"]["name"] for k in (await user_api.get(KEYS)).body["keypairs"]}
    assert names == {"x" * 255, "a", "A b_c-9 "}


async def test_a_duplicate_name_is_409_for_the_same_user_only(
    user_api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    assert (await user_api.post(KEYS, {"keypair": {"name": "dup"}})).status == 200
    public_key = _json_sample("keypairs-import-post-req.json")["keypair"]["public_key"]
    for body in ({"name": "dup"}, {"name": "dup", "public_key": public_key}):
        reply = await user_api.post(KEYS, {"keypair": body})
        assert reply.status == 409, reply
        assert reply.body["conflictingRequest"]["message"] == "Key pair 'dup' already exists."
    other = client_for(user_api.tenant, f"u{uuid.uuid4().hex[:10]}")
    assert (await other.post(KEYS, {"keypair": {"name": "dup"}})).status == 200


async def test_another_user_cannot_see_or_delete_them_even_in_the_same_project(
    user_api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    created = (await user_api.post(KEYS, {"keypair": {"name": "mine"}})).body["keypair"]
    other = client_for(user_api.tenant, f"u{uuid.uuid4().hex[:10]}")
    assert (await other.get(KEYS)).body == {"keypairs": []}
    assert (await other.get(f"{KEYS}/mine")).status == 404
    assert (await other.delete(f"{KEYS}/mine")).status == 404
    # the same user in another project has the same key pairs, as in nova
    user = user_api.token.split(":")[0]
    elsewhere = client_for(f"t{uuid.uuid4().hex[:10]}", user)
    reply = await elsewhere.get(f"{KEYS}/mine")
    assert (reply.status, reply.body["keypair"]["fingerprint"]) == (200, created["fingerprint"])


_gateway = gateway_of_its_own


async def test_the_quota_refuses_a_key_pair_past_it_until_one_is_deleted(
    system: System, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    user = f"u{uuid.uuid4().hex[:10]}"
    async with _gateway(system, tmp_path, quota_keypairs=2) as url:
        api = ComputeClient(http, url, f"t{uuid.uuid4().hex[:10]}", user)
        # the quota is the user's: key pairs made in another project count
        elsewhere = ComputeClient(http, url, f"t{uuid.uuid4().hex[:10]}", user)
        assert (await api.post(KEYS, {"keypair": {"name": "one"}})).status == 200
        assert (await elsewhere.post(KEYS, {"keypair": {"name": "two"}})).status == 200
        public_key = _json_sample("keypairs-import-post-req.json")["keypair"]["public_key"]
        for body in ({"name": "three"}, {"name": "three", "public_key": public_key}):
            reply = await api.post(KEYS, {"keypair": body})
            assert reply.status == 413, reply
            assert reply.headers["Retry-After"] == "0"
            fault = reply.body["overLimit"]
            assert (fault["code"], fault["message"]) == (
                413,
                "Quota exceeded, too many key pairs.",
            )
        # a duplicate is still a duplicate when the quota is full
        assert (await api.post(KEYS, {"keypair": {"name": "one"}})).status == 409
        assert (await api.delete(f"{KEYS}/two")).status == 202
        assert (await api.post(KEYS, {"keypair": {"name": "three"}})).status == 200
    async with _gateway(system, tmp_path, quota_keypairs=-1) as url:
        api = ComputeClient(http, url, f"t{uuid.uuid4().hex[:10]}", user)
        assert (await api.post(KEYS, {"keypair": {"name": "four"}})).status == 200


def _flat(element: ET.Element) -> dict[str, str]:
    """A nova flat-dict element: ``{child: text}``; no namespace anywhere."""
    assert not element.tag.startswith("{"), element.tag
    children = {}
    for child in element:
        assert not child.tag.startswith("{"), child.tag
        assert not list(child) and not child.attrib
        children[child.tag] = child.text or ""
    return children


async def test_the_xml_forms_are_nova_s(user_api: ComputeClient) -> None:
    # a generated key pair from nova's XML request
    reply = await send(user_api, "POST", KEYS, sample(f"{SAMPLES}/keypairs-post-req.xml"))
    assert (reply.status, reply.content_type) == (200, XML), reply
    root = ET.fromstring(reply.text)
    expected = ET.fromstring(sample(f"{SAMPLES}/keypairs-post-resp.xml"))
    assert root.tag == expected.tag == "keypair"
    created = _flat(root)
    assert set(created) == set(_flat(expected))
    assert created["name"] == "keypair-b03122a0-102b-445b-a128-dba267c7cd2a"
    assert created["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")

    # an imported one: nova's sample, with nova's fingerprint
    reply = await send(user_api, "POST", KEYS, sample(f"{SAMPLES}/keypairs-import-post-req.xml"))
    assert reply.status == 200, reply
    imported = _flat(ET.fromstring(reply.text))
    nova = _flat(ET.fromstring(sample(f"{SAMPLES}/keypairs-import-post-resp.xml")))
    assert imported == {**nova, "user_id": user_api.token.split(":")[0]}

    # the list, and one shown; by Accept and by suffix
    reply = await send(user_api, "GET", KEYS)
    root = ET.fromstring(reply.text)
    listed_sample = ET.fromstring(sample(f"{SAMPLES}/keypairs-get-resp.xml"))
    assert root.tag == listed_sample.tag == "keypairs"
    items = {_flat(child)["name"]: _flat(child) for child in root}
    assert all(child.tag == "keypair" for child in root)
    assert set(items[nova["name"]]) == set(_flat(listed_sample[0]))
    assert items[nova["name"]] == {k: nova[k] for k in ("name", "public_key", "fingerprint")}
    reply = await send(user_api, "GET", f"{KEYS}/{nova['name']}.xml", accept="*/*")
    assert (reply.status, reply.content_type) == (200, XML)
    shown = _flat(ET.fromstring(reply.text))  # the list's members and the record's
    assert {k: shown[k] for k in items[nova["name"]]} == items[nova["name"]]
    assert (shown["user_id"], shown["deleted"]) == (imported["user_id"], "false")
    # JSON asked for an XML request
    reply = await send(user_api, "GET", f"{KEYS}/{nova['name']}", accept=JSON)
    shown = json.loads(reply.text)["keypair"]
    assert {k: shown[k] for k in items[nova["name"]]} == items[nova["name"]]

    # faults stay v2 faults in XML; a delete is 202 with no body
    reply = await send(user_api, "GET", f"{KEYS}/nothing")
    assert reply.status == 404 and "itemNotFound" in reply.text
    reply = await send(user_api, "POST", KEYS, "<keypair><name>a.b</name></keypair>")
    assert reply.status == 400 and "unsafe characters" in reply.text
    reply = await send(user_api, "DELETE", f"{KEYS}/{nova['name']}")
    assert (reply.status, reply.text) == (202, "")


async def test_it_is_listed_among_the_extensions(api: ComputeClient) -> None:
    reply = await api.get("/extensions/os-keypairs")
    assert reply.status == 200
    assert reply.body["extension"] == {
        "alias": "os-keypairs",
        "name": "Keypairs",
        "namespace": "http://docs.openstack.org/compute/ext/keypairs/api/v1.1",
        "updated": "2011-08-08T00:00:00+00:00",
        "description": "Keypair Support.",
        "links": [],
    }
