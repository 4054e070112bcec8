"""Conformance cases of chapter 1 and of servers, flavors and images: create, links, paging,
versions, faults, details."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid

from tests.conformance.registry import (
    FAULT,
    FLAVOR_ALLOW,
    IMAGE_ALLOW,
    JSON,
    PAGE_ALLOW,
    SERVER_ALLOW,
    VERSION_JSON,
    XML,
    case,
)
from tests.conformance.support import Env, Raw, request_body

# --- chapter 1: requests and responses of create ------------------------------------------


async def _create(env: Env, sample: str, *, path: str = "/servers", accept: str = JSON) -> Raw:
    content_type = XML if sample.endswith(".xml") else JSON
    reply = await env.call(
        "POST", env.v2(path), body=request_body(sample), content_type=content_type, accept=accept
    )
    if reply.status == 202:
        env.created.append(reply.headers["Location"].rsplit("/", 1)[-1])
    return reply


@case(
    "1.1-create-json-with-accept-xml",
    covers=(
        "1.1-request-with-headers.http",
        "1.1-request-with-headers.json",
        "1.2-response-with-headers.http",
        "1.2-response-with-headers.xml",
    ),
    status=202,
    compare="1.2-response-with-headers.xml",
)
async def create_json_accept_xml(env: Env) -> Raw:
    return await _create(env, "1.1-request-with-headers.json", accept=XML)


@case(
    "1.3-create-json-with-xml-suffix",
    covers=(
        "1.3-json-request-with-xml-query-extension-for-the-response.http",
        "1.3-json-request-with-xml-query-extension-for-the-response.json",
    ),
    status=202,
    compare="2.6-server-create-response.xml",
)
async def create_with_suffix(env: Env) -> Raw:
    return await _create(
        env,
        "1.3-json-request-with-xml-query-extension-for-the-response.json",
        path="/servers.xml",
        accept=JSON,
    )


@case(
    "1.5-create-xml-id-references",
    covers=("1.5-id-image-reference.xml",),
    status=202,
    compare="2.6-server-create-response.xml",
)
async def create_xml_ids(env: Env) -> Raw:
    return await _create(env, "1.5-id-image-reference.xml", accept=XML)


@case(
    "2.3-create-json",
    covers=(
        "1.6-full-image-reference.json",
        "2.3-server-create-request.json",
        "2.4-server-create-response.json",
    ),
    status=202,
    compare="2.4-server-create-response.json",
)
async def create_json(env: Env) -> Raw:
    return await _create(env, "2.3-server-create-request.json")


@case(
    "2.5-create-xml",
    covers=(
        "1.7-full-image-reference.xml",
        "2.5-server-create-request.xml",
        "2.6-server-create-response.xml",
    ),
    status=202,
    compare="2.6-server-create-response.xml",
)
async def create_xml(env: Env) -> Raw:
    return await _create(env, "2.5-server-create-request.xml", accept=XML)


async def _create_with_access_ips(env: Env, sample: str) -> Raw:
    reply = await _create(env, sample)
    assert reply.status == 202
    server_id = reply.json()["server"]["id"]
    sent = request_body(sample).decode()
    shown = (await env.call("GET", env.v2(f"/servers/{server_id}"))).json()["server"]
    for family in ("accessIPv4", "accessIPv6"):
        given = re.search(family + r'"?\s*[:=]\s*"([^"]+)"', sent)
        if given is not None:  # answered in canonical form (docs/compatibility.md)
            canonical = str(ipaddress.ip_address(given.group(1)))
            assert shown[family] == canonical, (family, shown[family])
    return reply


@case(
    "2.7-create-access-ip-xml",
    covers=("2.7-creating-a-server-with-a-access-ip.xml",),
    status=202,
    compare="2.4-server-create-response.json",
)
async def create_access_ip_xml(env: Env) -> Raw:
    return await _create_with_access_ips(env, "2.7-creating-a-server-with-a-access-ip.xml")


@case(
    "2.8-create-access-ip-json",
    covers=("2.8-creating-a-server-with-a-access-ip.json",),
    status=202,
    compare="2.4-server-create-response.json",
)
async def create_access_ip_json(env: Env) -> Raw:
    return await _create_with_access_ips(env, "2.8-creating-a-server-with-a-access-ip.json")


@case(
    "2.9-create-access-ips-xml",
    covers=("2.9-creating-a-server-with-multiple-access-ips.xml",),
    status=202,
    compare="2.4-server-create-response.json",
)
async def create_access_ips_xml(env: Env) -> Raw:
    return await _create_with_access_ips(env, "2.9-creating-a-server-with-multiple-access-ips.xml")


@case(
    "2.10-create-access-ips-json",
    covers=("2.10-creating-a-server-with-multiple-access-ips.json",),
    status=202,
    compare="2.4-server-create-response.json",
)
async def create_access_ips_json(env: Env) -> Raw:
    return await _create_with_access_ips(
        env, "2.10-creating-a-server-with-multiple-access-ips.json"
    )


# --- links ----------------------------------------------------------------------------------


def _first_xml_child(document: bytes) -> bytes:
    """The first item of an XML collection, as a document of its own."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(document)
    return ET.tostring(root[0])


@case(
    "1.8-server-with-self-links-json",
    covers=("1.8-server-with-self-links.json",),
    status=200,
    compare="1.8-server-with-self-links.json",
)
async def server_links_json(env: Env) -> Raw:
    await env.server()
    reply = await env.call("GET", env.v2("/servers"))
    body = json.dumps({"server": reply.json()["servers"][0]}).encode()
    return Raw(reply.status, reply.content_type, body, reply.headers)


@case(
    "1.9-server-with-self-links-xml",
    covers=("1.9-server-with-self-links.xml",),
    status=200,
    compare="1.9-server-with-self-links.xml",
)
async def server_links_xml(env: Env) -> Raw:
    await env.server()
    reply = await env.call("GET", env.v2("/servers"), accept=XML)
    return Raw(reply.status, reply.content_type, _first_xml_child(reply.body), reply.headers)


@case(
    "1.10-image-with-alternate-link-json",
    covers=("1.10-server-with-alternate-link.json",),
    status=200,
    compare="1.10-server-with-alternate-link.json",
    allow=IMAGE_ALLOW,
)
async def image_links_json(env: Env) -> Raw:
    reply = await env.call("GET", env.v2("/images"))
    body = json.dumps({"image": reply.json()["images"][0]}).encode()
    return Raw(reply.status, reply.content_type, body, reply.headers)


@case(
    "1.11-image-with-alternate-link-xml",
    covers=("1.11-image-with-alternate-link.xml",),
    status=200,
    compare="1.11-image-with-alternate-link.xml",
    allow=IMAGE_ALLOW,
)
async def image_links_xml(env: Env) -> Raw:
    reply = await env.call("GET", env.v2("/images"), accept=XML)
    return Raw(reply.status, reply.content_type, _first_xml_child(reply.body), reply.headers)


# --- pagination: three images, one per page ------------------------------------------------


async def _third_image(env: Env) -> None:
    """Two images are seeded for everyone; give this project a third one of its own."""
    assert env.system.pool is not None
    await env.system.pool.execute(
        "INSERT INTO images (id, name, status, owner, is_public) VALUES ($1, $2, 'active', $3,"
        " false)",
        uuid.uuid4(),
        "conformance image",
        env.tenant,
    )


async def _image_page(env: Env, page: int, accept: str) -> Raw:
    await _third_image(env)
    path = env.v2("/images?limit=1")
    reply = await env.call("GET", path)
    for _ in range(page - 1):
        (link,) = reply.json()["images_links"]
        path = link["href"]
        reply = await env.call("GET", path)
    return await env.call("GET", path, accept=accept)


for _page, (_xml, _json) in enumerate(
    [
        ("1.12-images-collection-first-page.xml", "1.13-images-collection-first-page.json"),
        ("1.14-images-collection-second-page.xml", "1.15-images-collection-second-page.json"),
        ("1.16-images-collection-last-page.xml", "1.17-images-collection-last-page.json"),
    ],
    start=1,
):
    for _sample, _accept in ((_xml, XML), (_json, JSON)):

        async def _run(env: Env, page: int = _page, accept: str = _accept) -> Raw:
            return await _image_page(env, page, accept)

        case(
            _sample.removesuffix(".xml").removesuffix(".json") + _accept[-4:],
            covers=(_sample,),
            status=200,
            compare=_sample,
            allow=PAGE_ALLOW,
        )(_run)


# --- versions --------------------------------------------------------------------------------


@case(
    "1.22-mime-type-versioning",
    covers=("1.22-request-with-mime-type-versioning.http",),
    status=200,
    compare="1.12-images-collection-first-page.xml",
    allow=PAGE_ALLOW,
)
async def mime_versioning(env: Env) -> Raw:
    await _third_image(env)
    return await env.call(
        "GET", f"/{env.tenant}/images?limit=1", accept="application/vnd.openstack.compute.v2+xml"
    )


@case(
    "1.23-uri-versioning",
    covers=("1.23-request-with-uri-versioning.http",),
    status=200,
    compare="1.12-images-collection-first-page.xml",
    allow=PAGE_ALLOW,
)
async def uri_versioning(env: Env) -> Raw:
    await _third_image(env)
    return await env.call("GET", env.v2("/images?limit=1"), accept=XML)


@case(
    "1.24-multiple-choices-xml",
    covers=("1.24-multiple-choices-response.xml",),
    status=300,
    compare="1.24-multiple-choices-response.xml",
)
async def choices_xml(env: Env) -> Raw:
    return await env.call("GET", f"/{env.tenant}/servers/{uuid.uuid4()}", accept=XML)


@case(
    "1.25-multiple-choices-json",
    covers=("1.25-multiple-choices-response.json",),
    status=300,
    compare="1.25-multiple-choices-response.json",
)
async def choices_json(env: Env) -> Raw:
    return await env.call("GET", f"/{env.tenant}/servers/{uuid.uuid4()}")


@case(
    "1.27-versions-xml",
    covers=("1.26-versions-list-request.http", "1.27-versions-list-response.xml"),
    status=200,
    compare="1.27-versions-list-response.xml",
)
async def versions_xml(env: Env) -> Raw:
    return await env.call("GET", "/", accept=XML, token=False)


@case(
    "1.28-versions-atom",
    covers=("1.28-versions-list-response.atom",),
    status=200,
    compare="1.28-versions-list-response.atom",
)
async def versions_atom(env: Env) -> Raw:
    return await env.call("GET", "/", accept="application/atom+xml", token=False)


@case(
    "1.29-versions-json",
    covers=("1.29-versions-list-response.json",),
    status=200,
    compare="1.29-versions-list-response.json",
    allow=VERSION_JSON,
)
async def versions_json(env: Env) -> Raw:
    return await env.call("GET", "/", token=False)


@case(
    "1.31-version-xml",
    covers=("1.30-version-details-request.http", "1.31-version-details-response.xml"),
    status=200,
    compare="1.31-version-details-response.xml",
)
async def version_xml(env: Env) -> Raw:
    return await env.call("GET", "/v2/", accept=XML)


@case(
    "1.32-version-atom",
    covers=("1.32-version-details-response.atom",),
    status=200,
    compare="1.32-version-details-response.atom",
)
async def version_atom(env: Env) -> Raw:
    return await env.call("GET", "/v2/", accept="application/atom+xml")


@case(
    "1.33-version-json",
    covers=("1.33-version-details-response.json",),
    status=200,
    compare="1.33-version-details-response.json",
    allow=VERSION_JSON,
)
async def version_json(env: Env) -> Raw:
    return await env.call("GET", "/v2/")


# --- faults ----------------------------------------------------------------------------------


@case(
    "1.44-item-not-found-xml",
    covers=("1.44-fault-response-item-not-found.xml",),
    status=404,
    compare="1.44-fault-response-item-not-found.xml",
    allow=FAULT,
)
async def not_found_xml(env: Env) -> Raw:
    return await env.call("GET", env.v2(f"/servers/{uuid.uuid4()}"), accept=XML)


@case(
    "1.45-item-not-found-json",
    covers=("1.45-fault-response-item-not-found.json",),
    status=404,
    compare="1.45-fault-response-item-not-found.json",
    allow=FAULT,
)
async def not_found_json(env: Env) -> Raw:
    return await env.call("GET", env.v2(f"/servers/{uuid.uuid4()}"))


for _fmt, _accept in (("json", JSON), ("xml", XML)):

    async def _bad_request(env: Env, accept: str = _accept) -> Raw:
        return await env.call(
            "POST", env.v2("/servers"), body=b"{", content_type=JSON, accept=accept
        )

    async def _bad_media(env: Env, accept: str = _accept) -> Raw:
        return await env.call(
            "POST", env.v2("/servers"), body=b"x", content_type="text/plain", accept=accept
        )

    async def _bad_method(env: Env, accept: str = _accept) -> Raw:
        return await env.call(
            "PUT", env.v2("/flavors"), body=b"{}", content_type=JSON, accept=accept
        )

    async def _unauthorized(env: Env, accept: str = _accept) -> Raw:
        return await env.call("GET", env.v2("/servers"), accept=accept, token=False)

    async def _forbidden(env: Env, accept: str = _accept) -> Raw:
        return await env.call("GET", "/v2/someone-else/servers", accept=accept)

    for _kind, _status, _run_fault in (
        ("badRequest", 400, _bad_request),
        ("badMediaType", 415, _bad_media),
        ("badMethod", 405, _bad_method),
        ("unauthorized", 401, _unauthorized),
        ("forbidden", 403, _forbidden),
    ):
        _file = f"extra/faults/{_kind}.{_fmt}"
        case(f"fault-{_kind}-{_fmt}", covers=(_file,), status=_status, compare=_file, allow=FAULT)(
            _run_fault
        )


# --- servers -----------------------------------------------------------------------------------


async def _detailed_server(env: Env) -> str:
    return await env.server(
        metadata={"Server Label": "Web Head 1", "Image Version": "2.1"},
        accessIPv4="67.23.10.132",
        accessIPv6="::babe:67.23.10.132",
    )


@case(
    "2.1-list-servers-detail-xml",
    covers=("2.1-list-servers-response-detail.xml",),
    status=200,
    compare="2.1-list-servers-response-detail.xml",
    allow=SERVER_ALLOW,
)
async def servers_detail_xml(env: Env) -> Raw:
    await _detailed_server(env)
    return await env.call("GET", env.v2("/servers/detail"), accept=XML)


@case(
    "2.2-list-servers-detail-json",
    covers=("2.2-list-servers-response-detail.json",),
    status=200,
    compare="2.2-list-servers-response-detail.json",
    allow=SERVER_ALLOW,
)
async def servers_detail_json(env: Env) -> Raw:
    await _detailed_server(env)
    return await env.call("GET", env.v2("/servers/detail"))


@case(
    "2.11-server-details-xml",
    covers=("2.11-server-details-response.xml",),
    status=200,
    compare="2.11-server-details-response.xml",
    allow=SERVER_ALLOW,
)
async def server_xml(env: Env) -> Raw:
    server_id = await _detailed_server(env)
    return await env.call("GET", env.v2(f"/servers/{server_id}"), accept=XML)


@case(
    "2.12-server-details-json",
    covers=("2.12-server-details-response.json",),
    status=200,
    compare="2.12-server-details-response.json",
    allow=SERVER_ALLOW,
)
async def server_json(env: Env) -> Raw:
    server_id = await _detailed_server(env)
    return await env.call("GET", env.v2(f"/servers/{server_id}"))


# --- flavors and images --------------------------------------------------------------------------


@case(
    "2.41-flavors-detail-xml",
    covers=("2.41-flavors-list-response-detail.xml",),
    status=200,
    compare="2.41-flavors-list-response-detail.xml",
    allow=FLAVOR_ALLOW,
)
async def flavors_xml(env: Env) -> Raw:
    return await env.call("GET", env.v2("/flavors/detail"), accept=XML)


@case(
    "2.42-flavors-detail-json",
    covers=("2.42-flavors-list-response-detail.json",),
    status=200,
    compare="2.42-flavors-list-response-detail.json",
    allow=FLAVOR_ALLOW,
)
async def flavors_json(env: Env) -> Raw:
    return await env.call("GET", env.v2("/flavors/detail"))


@case(
    "2.43-flavor-xml",
    covers=("2.43-flavor-details-response.xml",),
    status=200,
    compare="2.43-flavor-details-response.xml",
    allow=FLAVOR_ALLOW,
)
async def flavor_xml(env: Env) -> Raw:
    return await env.call("GET", env.v2("/flavors/1"), accept=XML)


@case(
    "2.44-flavor-json",
    covers=("2.44-flavor-details-response.json",),
    status=200,
    compare="2.44-flavor-details-response.json",
    allow=FLAVOR_ALLOW,
)
async def flavor_json(env: Env) -> Raw:
    return await env.call("GET", env.v2("/flavors/1"))
