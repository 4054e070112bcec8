"""Flavor extra specs (os-flavor-extra-specs): everyone reads them, administrators write them.
Every XML answer is parsed by a real XML parser, whatever the keys (``hw:cpu_policy`` is no
element name), and nova's samples (samples/nova-2013.1/os-flavor-extra-specs) still hold.
Every test leaves the shared flavors as it found them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

import pytest

from stratus.system import System
from tests.support.client import ComputeClient
from tests.support.xml import JSON, sample, send

FLAVOR = "3"
SPECS = f"/flavors/{FLAVOR}/os-extra_specs"
SAMPLES = "nova-2013.1/os-flavor-extra-specs"

#: Keys no element could be named after, and values XML must escape.
AWKWARD = {
    "hw:cpu_policy": "dedicated",
    "quota:disk_read_bytes_sec": "10240000",
    "with space": "a b",
    "1st": "<b>&amp; 'q' \"qq\"",
    "café:ñ": "naïve → ✓",
    "xmlish": "reserved prefix",
    "plain_key-1.0": "stays an element",
}


def _spec_path(key: str) -> str:
    return f"{SPECS}/{quote(key, safe='')}"


def _specs_of(root: ET.Element) -> dict[str, str]:
    """``{key: value}`` of an ``<extra_specs>`` answer, in either of its item forms."""
    assert root.tag == "extra_specs", root.tag
    return {
        child.attrib["key"] if child.tag == "extra_spec" else child.tag: child.text or ""
        for child in root
    }


def _spec_of(root: ET.Element) -> dict[str, str]:
    """``{key: value}`` of a one-key answer, ``<extra_spec key="…">value</extra_spec>``."""
    assert (root.tag, list(root.attrib)) == ("extra_spec", ["key"]), ET.tostring(root)
    return {root.attrib["key"]: root.text or ""}


def _xml_specs(specs: dict[str, str]) -> str:
    """A request body of ``<extra_spec key>`` items, as a client with such keys sends it."""
    items = "".join(
        f"<extra_spec key={quoteattr(k)}>{escape(v)}</extra_spec>" for k, v in specs.items()
    )
    return f"<?xml version='1.0' encoding='UTF-8'?><extra_specs>{items}</extra_specs>"


@pytest.fixture
async def admin(
    client_for: Callable[[str, str], ComputeClient], tenant: str
) -> AsyncIterator[ComputeClient]:
    """An administrator; the flavor has no extra specs before and after the test."""
    admin = client_for(tenant, "admin")
    assert (await admin.get(f"/flavors/{FLAVOR}/os-extra_specs")).body == {"extra_specs": {}}
    yield admin
    specs = (await admin.get(SPECS)).body["extra_specs"]
    for key in specs:
        await admin.delete(_spec_path(key))


async def test_a_flavor_without_extra_specs_shows_an_empty_set(api: ComputeClient) -> None:
    reply = await api.get("/flavors/1/os-extra_specs")
    assert (reply.status, reply.body) == (200, {"extra_specs": {}})
    assert (await api.get("/flavors/1/os-extra_specs/hw:cpu_policy")).status == 404
    assert (await api.get("/flavors/no-such-flavor/os-extra_specs")).status == 404


async def test_an_administrator_sets_updates_and_removes_them(
    admin: ComputeClient, api: ComputeClient
) -> None:
    specs = f"/flavors/{FLAVOR}/os-extra_specs"
    reply = await admin.post(specs, {"extra_specs": {"hw:cpu_policy": "dedicated", "n": 2}})
    assert (reply.status, reply.body) == (
        200,
        {"extra_specs": {"hw:cpu_policy": "dedicated", "n": "2"}},
    )
    reply = await admin.request("PUT", f"{specs}/n", {"n": "4"})
    assert (reply.status, reply.body) == (200, {"n": "4"})
    assert (await api.get(specs)).body == {"extra_specs": {"hw:cpu_policy": "dedicated", "n": "4"}}
    assert (await api.get(f"{specs}/n")).body == {"n": "4"}
    assert (await admin.delete(f"{specs}/n")).status == 200
    assert (await admin.delete(f"{specs}/n")).status == 404
    assert (await api.get(specs)).body == {"extra_specs": {"hw:cpu_policy": "dedicated"}}


async def test_bad_writes_are_400_and_members_may_not_write(
    admin: ComputeClient, api: ComputeClient
) -> None:
    specs = f"/flavors/{FLAVOR}/os-extra_specs"
    assert (await admin.request("PUT", f"{specs}/a", {"b": "1"})).status == 400
    assert (await admin.request("PUT", f"{specs}/a", {"a": "1", "b": "2"})).status == 400
    assert (await admin.post(specs, {"extra_specs": {"": "x"}})).status == 400
    assert (await admin.post(specs, {"extra_specs": {"a": "x" * 256}})).status == 400
    assert (await admin.post(specs, {"specs": {}})).status == 400
    assert (
        await admin.post("/flavors/none/os-extra_specs", {"extra_specs": {"a": "1"}})
    ).status == 404
    for reply in (
        await api.post(specs, {"extra_specs": {"a": "1"}}),
        await api.request("PUT", f"{specs}/a", {"a": "1"}),
        await api.delete(f"{specs}/a"),
    ):
        assert (reply.status, next(iter(reply.body))) == (403, "forbidden")
    assert (await api.get(specs)).body == {"extra_specs": {}}


async def test_nova_samples_in_xml(admin: ComputeClient, api: ComputeClient) -> None:
    created = await send(
        admin, "POST", SPECS, sample(f"{SAMPLES}/flavor-extra-specs-create-req.xml")
    )
    assert created.status == 200, created
    assert created.xml.attrib == {}  # no namespace, no attributes: nova's flat form
    expected = ET.fromstring(sample(f"{SAMPLES}/flavor-extra-specs-create-resp.xml"))
    assert _specs_of(created.xml) == _specs_of(expected) == {"key1": "value1", "key2": "value2"}
    assert [child.tag for child in created.xml] == ["key1", "key2"]  # elements, as nova's

    listed = await send(api, "GET", SPECS)
    expected = ET.fromstring(sample(f"{SAMPLES}/flavor-extra-specs-list-resp.xml"))
    assert _specs_of(listed.xml) == _specs_of(expected)
    shown = await send(api, "GET", _spec_path("key1"))
    expected = ET.fromstring(sample(f"{SAMPLES}/flavor-extra-specs-get-resp.xml"))
    assert _spec_of(shown.xml) == _spec_of(expected) == {"key1": "value1"}

    body = sample(f"{SAMPLES}/flavor-extra-specs-update-req.xml")
    updated = await send(admin, "PUT", _spec_path("key1"), body)
    assert updated.status == 200, updated
    expected = ET.fromstring(sample(f"{SAMPLES}/flavor-extra-specs-update-resp.xml"))
    assert _spec_of(updated.xml) == _spec_of(expected) == {"key1": "new_value1"}
    assert (await api.get(SPECS)).body == {"extra_specs": {"key1": "new_value1", "key2": "value2"}}


async def test_awkward_keys_set_in_json_are_well_formed_xml(
    admin: ComputeClient, api: ComputeClient
) -> None:
    created = await send(
        admin, "POST", SPECS, json.dumps({"extra_specs": AWKWARD}), content_type=JSON
    )
    assert created.status == 200, created
    assert _specs_of(created.xml) == AWKWARD
    assert (await api.get(SPECS)).body == {"extra_specs": AWKWARD}
    listed = await send(api, "GET", SPECS)
    assert _specs_of(listed.xml) == AWKWARD
    # keys that are element names stay elements (nova's form), the others are attributes
    forms = {child.attrib.get("key", child.tag): child.tag for child in listed.xml}
    assert forms["plain_key-1.0"] == "plain_key-1.0"
    assert {k for k, tag in forms.items() if tag == "extra_spec"} == set(AWKWARD) - {
        "plain_key-1.0"
    }
    for key, value in AWKWARD.items():
        assert (await api.get(_spec_path(key))).body == {key: value}
        shown = await send(api, "GET", _spec_path(key))
        assert _spec_of(shown.xml) == {key: value}
        updated = await send(
            admin,
            "PUT",
            _spec_path(key),
            json.dumps({key: value + "!"}),
            content_type=JSON,
        )
        assert _spec_of(updated.xml) == {key: value + "!"}


async def test_awkward_keys_set_in_xml_round_trip(admin: ComputeClient, api: ComputeClient) -> None:
    # nova's element form and the attribute form may be mixed in one request
    body = _xml_specs(AWKWARD).replace("</extra_specs>", "<key1>value1</key1></extra_specs>")
    created = await send(admin, "POST", SPECS, body, accept=JSON)
    assert created.status == 200, created
    expected = {**AWKWARD, "key1": "value1"}
    assert json.loads(created.text) == {"extra_specs": expected}
    assert (await api.get(SPECS)).body == {"extra_specs": expected}
    assert _specs_of((await send(api, "GET", SPECS)).xml) == expected

    # one key's update, in the attribute form (its only form for such a key)
    key = "hw:cpu_policy"
    one = f"<extra_spec key={quoteattr(key)}>shared &amp; &lt;fast&gt;</extra_spec>"
    updated = await send(admin, "PUT", _spec_path(key), one)
    assert updated.status == 200, updated
    assert _spec_of(updated.xml) == {key: "shared & <fast>"}
    assert (await api.get(_spec_path(key))).body == {key: "shared & <fast>"}
    # the URL's key and the body's must still agree
    wrong = await send(admin, "PUT", _spec_path("1st"), one)
    assert wrong.status == 400, wrong


async def test_keys_outside_the_rule_are_refused_in_both_formats(
    admin: ComputeClient, api: ComputeClient
) -> None:
    for bad in ("a<b", "a&b", "a/b", "x" * 256):
        reply = await admin.post(SPECS, {"extra_specs": {bad: "1"}})
        assert reply.status == 400, (bad, reply)
        raw = await send(admin, "POST", SPECS, _xml_specs({bad: "1"}))
        assert raw.status == 400, (bad, raw)
        ET.fromstring(raw.text)  # the fault is well-formed too
    nested = "<extra_specs><a><b>1</b></a></extra_specs>"
    assert (await send(admin, "POST", SPECS, nested)).status == 400
    assert (await api.get(SPECS)).body == {"extra_specs": {}}


async def test_any_stored_key_is_still_well_formed(
    admin: ComputeClient, api: ComputeClient, system: System
) -> None:
    """Whatever the table holds (written before the key rule, or by hand), the XML parses."""
    assert system.pool is not None
    stored = {"a<b&c>": "x", "]]>": "<![CDATA[", "tab\tkey": "v"}
    await system.pool.executemany(
        "INSERT INTO flavor_extra_specs (flavor_id, key, value) VALUES ($1, $2, $3)",
        [(FLAVOR, k, v) for k, v in stored.items()],
    )
    assert _specs_of((await send(api, "GET", SPECS)).xml) == stored
    for key, value in stored.items():
        assert _spec_of((await send(api, "GET", _spec_path(key))).xml) == {key: value}
        assert (await admin.delete(_spec_path(key))).status == 200
    assert (await send(api, "GET", SPECS)).text.endswith("<extra_specs/>")
