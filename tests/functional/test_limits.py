"""Rate limits, quotas and GET /limits (guide 1.6, 1.9.1), each on a gateway of its own.

The shared system runs without rate limits and with unlimited quotas (other tests build many
servers in one project), so every test here starts a second gateway application with the
limits it needs, on the same database and bus: the servers it creates are really built.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_gateway.compute import quotas
from api_gateway.http.faults import OverLimit
from api_gateway.schemas.servers import PersonalityFile
from shared.rate_limits import DEFAULT_RATE_LIMITS
from stratus.system import System
from tests.conftest import IMAGE
from tests.conftest import test_settings as settings_for
from tests.support.client import ComputeClient, Reply
from tests.support.gateway import gateway_of_its_own

COMMON_NS = "{http://docs.openstack.org/common/api/v1.0}"
COMPUTE_NS = "{http://docs.openstack.org/compute/api/v1.1}"
XML = {"Accept": "application/xml"}

Gateway = Callable[..., Any]


_gateway = gateway_of_its_own


@pytest.fixture
def gateway(system: System, tmp_path: Path) -> Gateway:
    def start(**overrides: object) -> Any:
        return _gateway(system, tmp_path, **overrides)

    return start


@pytest.fixture
def user() -> str:
    """A user of its own: rate limits count per user, across projects and gateways."""
    return f"u{uuid.uuid4().hex[:10]}"


def _client(http: aiohttp.ClientSession, url: str, tenant: str, user: str) -> ComputeClient:
    return ComputeClient(http, url, tenant, user)


def _when(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _assert_retry_after(reply: Reply, low: int, high: int) -> None:
    """``Retry-After`` is whole seconds in [low, high]; the body's ``retryAfter`` is the
    moment they point at (a dateTime, Ex 1.47)."""
    seconds = int(reply.headers["Retry-After"])
    assert low <= seconds <= high, seconds
    moment = _when(reply.body["overLimit"]["retryAfter"])
    expected = datetime.now(UTC) + timedelta(seconds=seconds)
    assert abs((moment - expected).total_seconds()) <= 2


# --- rate limits ------------------------------------------------------------------------


async def test_rate_limit_refuses_the_request_after_the_configured_count(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    async with gateway(rate_limits='(POST, "*", .*, 3, MINUTE)') as url:
        api = _client(http, url, tenant, user)
        for _ in range(3):  # counted before validation: a bad body still counts
            assert (await api.post("/servers", {})).status == 400
        refused = await api.post("/servers", {})
        assert refused.status == 413
        assert refused.body["overLimit"]["code"] == 413
        assert refused.body["overLimit"]["message"] == "This request was rate-limited."
        assert refused.body["overLimit"]["details"] == (
            "Only 3 POST request(s) can be made to * every minute."
        )
        _assert_retry_after(refused, 18, 20)  # one request's worth: 60 s / 3
        # GETs match no limit and go on
        assert (await api.get("/servers")).status == 200


async def test_rate_limit_fault_in_xml_has_retry_after_as_an_attribute(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    async with gateway(rate_limits='(POST, "*", .*, 1, HOUR)') as url:
        api = _client(http, url, tenant, user)
        assert (await api.post("/servers", {})).status == 400
        reply = await api.request("POST", "/servers", {}, headers=XML)
        assert reply.status == 413
        assert 3598 <= int(reply.headers["Retry-After"]) <= 3600
        root = ET.fromstring(reply.body)
        assert root.tag == f"{COMPUTE_NS}overLimit"
        assert root.attrib["code"] == "413"
        assert _when(root.attrib["retryAfter"]) > datetime.now(UTC) + timedelta(minutes=59)
        assert root.findtext(f"{COMPUTE_NS}message") == "This request was rate-limited."
        assert root.findtext(f"{COMPUTE_NS}details") == (
            "Only 1 POST request(s) can be made to * every hour."
        )


async def test_a_refused_request_is_counted_against_no_limit(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    limits = '(POST, "*", .*, 2, MINUTE);(POST, "*/servers", ^/servers, 5, DAY)'
    async with gateway(rate_limits=limits) as url:
        api = _client(http, url, tenant, user)
        statuses = [(await api.post("/servers", {})).status for _ in range(4)]
        assert statuses == [400, 400, 413, 413]
        rates = (await api.get("/limits")).body["limits"]["rate"]
        remaining = {group["uri"]: group["limit"][0]["remaining"] for group in rates}
        assert remaining == {"*": 0, "*/servers": 3}  # the two refused POSTs cost nothing


async def test_gateways_on_one_database_share_the_counters(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    limits = '(DELETE, "*", .*, 3, MINUTE)'
    async with gateway(rate_limits=limits) as url_a, gateway(rate_limits=limits) as url_b:
        a = _client(http, url_a, tenant, user)
        b = _client(http, url_b, tenant, user)
        missing = f"/servers/{uuid.uuid4()}"
        assert (await a.delete(missing)).status == 404
        assert (await b.delete(missing)).status == 404
        assert (await a.delete(missing)).status == 404
        assert (await b.delete(missing)).status == 413
        assert (await a.delete(missing)).status == 413


async def test_concurrent_requests_cannot_overdraw_a_limit(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    limits = '(DELETE, "*", .*, 5, HOUR)'
    async with gateway(rate_limits=limits) as url_a, gateway(rate_limits=limits) as url_b:
        clients = [_client(http, url, tenant, user) for url in (url_a, url_b)]
        replies = await asyncio.gather(
            *(clients[i % 2].delete(f"/servers/{uuid.uuid4()}") for i in range(16))
        )
        assert sorted(r.status for r in replies) == [404] * 5 + [413] * 11


async def test_changes_since_has_its_own_limit_and_plain_gets_never_reach_the_counters(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    system: System,
    tenant: str,
    user: str,
) -> None:
    assert system.pool is not None
    async with gateway(rate_limits=DEFAULT_RATE_LIMITS) as url:
        api = _client(http, url, tenant, user)
        for _ in range(10):
            assert (await api.get("/servers/detail")).status == 200
        counters = await system.pool.fetchval(
            "SELECT count(*) FROM rate_limit_counters WHERE user_id = $1", user
        )
        assert counters == 0
        polls = [await api.get("/servers?changes-since=2011-01-24T17:08Z") for _ in range(4)]
        assert [p.status for p in polls[:3]] == [200, 200, 200]
        assert polls[3].status == 413
        assert polls[3].body["overLimit"]["details"] == (
            "Only 3 GET request(s) can be made to *changes-since* every minute."
        )
        assert (await api.get("/servers")).status == 200


async def test_bookmark_urls_count_like_versioned_ones(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    async with gateway(rate_limits='(GET, "*/flavors", ^/flavors, 1, MINUTE)') as url:
        api = _client(http, url, tenant, user)
        assert (await api.get("/flavors")).status == 200
        bookmark = await api.request(
            "GET",
            f"{url}/{tenant}/flavors",
            headers={"Accept": "application/vnd.openstack.compute+json;version=2"},
        )
        assert bookmark.status == 413
        assert (await api.get("/images")).status == 200


# --- GET /limits ------------------------------------------------------------------------

#: Ex 1.21's members.
_LIMIT_MEMBERS = {"value", "verb", "remaining", "unit", "next-available"}
_ABSOLUTE = {
    "maxTotalInstances": 10,
    "maxTotalCores": 20,
    "maxTotalRAMSize": 51200,
    "maxServerMeta": 128,
    "maxImageMeta": 128,
    "maxPersonality": 5,
    "maxPersonalitySize": 10240,
}


def _limit_entries(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (group["uri"], entry["verb"]): entry
        for group in body["limits"]["rate"]
        for entry in group["limit"]
    }


async def test_limits_show_the_users_counters_and_the_projects_usage(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    defaults = {"quota_instances": 10, "quota_cores": 20, "quota_ram_mb": 51200}
    async with gateway(rate_limits=DEFAULT_RATE_LIMITS, **defaults) as url:
        api = _client(http, url, tenant, user)
        before = (await api.get("/limits")).body
        assert set(before) == {"limits"} and set(before["limits"]) == {"rate", "absolute"}
        assert [(g["uri"], g["regex"]) for g in before["limits"]["rate"]] == [
            ("*", ".*"),
            ("*/servers", "^/servers"),
            ("*changes-since*", ".*changes-since.*"),
        ]
        entries = _limit_entries(before)
        assert all(set(e) == _LIMIT_MEMBERS for e in entries.values())
        assert {k: e["remaining"] for k, e in entries.items()} == {
            ("*", "POST"): 10,
            ("*", "PUT"): 10,
            ("*", "DELETE"): 100,
            ("*/servers", "POST"): 50,
            ("*changes-since*", "GET"): 3,
        }
        assert before["limits"]["absolute"] == {
            **_ABSOLUTE,
            "totalInstancesUsed": 0,
            "totalCoresUsed": 0,
            "totalRAMUsed": 0,
            # not served: nova's defaults, nothing used (docs/compatibility.md)
            "maxTotalKeypairs": 100,
            "maxSecurityGroups": 10,
            "maxSecurityGroupRules": 20,
            "maxTotalFloatingIps": 10,
            "maxServerGroups": 10,
            "maxServerGroupMembers": 10,
            "totalSecurityGroupsUsed": 0,
            "totalFloatingIpsUsed": 0,
            "totalServerGroupsUsed": 0,
        }

        created = await api.create_server("counted", IMAGE, "2")  # 1 vCPU, 2048 MB
        assert created.status == 202
        server_id = created.body["server"]["id"]
        after = (await api.get("/limits")).body
        entries = _limit_entries(after)
        assert entries["*", "POST"]["remaining"] == 9
        assert entries["*/servers", "POST"]["remaining"] == 49
        assert entries["*", "PUT"]["remaining"] == 10
        assert abs(_when(entries["*", "POST"]["next-available"]) - datetime.now(UTC)) < timedelta(
            seconds=3
        )
        absolute = after["limits"]["absolute"]
        assert (absolute["totalInstancesUsed"], absolute["totalCoresUsed"]) == (1, 1)
        assert absolute["totalRAMUsed"] == 2048

        await api.delete_and_wait(server_id)
        final = (await api.get("/limits")).body
        assert _limit_entries(final)["*", "DELETE"]["remaining"] == 99
        assert final["limits"]["absolute"]["totalInstancesUsed"] == 0


async def test_next_available_is_when_an_exhausted_limit_takes_a_request_again(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    async with gateway(rate_limits='(DELETE, "*", .*, 2, HOUR)') as url:
        api = _client(http, url, tenant, user)
        for _ in range(2):
            assert (await api.delete(f"/servers/{uuid.uuid4()}")).status == 404
        (entry,) = _limit_entries((await api.get("/limits")).body).values()
        assert entry["remaining"] == 0
        wait = _when(entry["next-available"]) - datetime.now(UTC)
        assert timedelta(minutes=29) < wait <= timedelta(minutes=30)


async def test_limits_in_xml_have_the_shape_of_ex_1_20(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    async with gateway(rate_limits=DEFAULT_RATE_LIMITS) as url:
        api = _client(http, url, tenant, user)
        for reply in (await api.get("/limits.xml"), await api.request("GET", "/limits", None, XML)):
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("application/xml")
            root = ET.fromstring(reply.body)
            assert root.tag == f"{COMMON_NS}limits"
            assert [child.tag for child in root] == [f"{COMMON_NS}rates", f"{COMMON_NS}absolute"]
            rates = root.findall(f"{COMMON_NS}rates/{COMMON_NS}rate")
            assert (rates[0].attrib["uri"], rates[0].attrib["regex"]) == ("*", ".*")
            assert all(set(r.attrib) == {"uri", "regex"} for r in rates)
            limits = root.findall(f"{COMMON_NS}rates/{COMMON_NS}rate/{COMMON_NS}limit")
            assert len(limits) == 5
            assert all(set(limit.attrib) == _LIMIT_MEMBERS for limit in limits)
            absolute = {
                limit.attrib["name"]: limit.attrib["value"]
                for limit in root.findall(f"{COMMON_NS}absolute/{COMMON_NS}limit")
            }
            assert {"maxTotalRAMSize", "maxServerMeta", "maxImageMeta"} <= set(absolute)
            assert absolute["totalInstancesUsed"] == "0"


async def test_limits_without_rate_limits_list_no_rates(api: ComputeClient) -> None:
    reply = await api.get("/limits")
    assert reply.status == 200
    assert reply.body["limits"]["rate"] == []
    assert reply.body["limits"]["absolute"]["maxTotalInstances"] == -1  # unlimited here
    xml = ET.fromstring((await api.get("/limits.xml")).body)
    assert xml.findall(f"{COMMON_NS}rates/{COMMON_NS}rate") == []


# --- quotas -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quota", "flavor", "message"),
    [
        (
            {"quota_instances": 2},
            "1",
            "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances",
        ),
        (
            {"quota_cores": 5},
            "3",  # m1.medium: 2 vCPUs
            "Quota exceeded for cores: Requested 2, but already used 4 of 5 cores",
        ),
        (
            {"quota_ram_mb": 1500},
            "1",  # m1.tiny: 512 MB
            "Quota exceeded for ram: Requested 512, but already used 1024 of 1500 ram",
        ),
    ],
)
async def test_a_quota_refuses_the_server_past_it_until_one_is_deleted(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    tenant: str,
    user: str,
    quota: dict[str, int],
    flavor: str,
    message: str,
) -> None:
    async with gateway(**quota) as url:
        api = _client(http, url, tenant, user)
        ids = []
        for i in range(2):
            reply = await api.create_server(f"q{i}", IMAGE, flavor)
            assert reply.status == 202, reply
            ids.append(reply.body["server"]["id"])
        refused = await api.create_server("one-too-many", IMAGE, flavor)
        assert refused.status == 413
        assert refused.headers["Retry-After"] == "0"
        assert refused.body["overLimit"]["message"] == message
        _assert_retry_after(refused, 0, 0)
        assert len((await api.get("/servers")).body["servers"]) == 2

        await api.delete_and_wait(ids.pop())
        again = await api.create_server("fits-again", IMAGE, flavor)
        assert again.status == 202
        ids.append(again.body["server"]["id"])
        for server_id in ids:
            await api.delete_and_wait(server_id)


async def test_concurrent_creates_cannot_exceed_the_quota(
    gateway: Gateway,
    http: aiohttp.ClientSession,
    system: System,
    tenant: str,
    user: str,
) -> None:
    assert system.pool is not None
    async with gateway(quota_instances=3) as url_a, gateway(quota_instances=3) as url_b:
        clients = [_client(http, url, tenant, user) for url in (url_a, url_b)]
        replies = await asyncio.gather(
            *(clients[i % 2].create_server(f"race{i}", IMAGE) for i in range(12))
        )
        assert sorted(r.status for r in replies) == [202] * 3 + [413] * 9
        live = await system.pool.fetchval(
            "SELECT count(*) FROM servers WHERE tenant_id = $1 AND deleted_at IS NULL", tenant
        )
        assert live == 3
        for reply in replies:
            if reply.status == 202:
                await clients[0].delete_and_wait(reply.body["server"]["id"])


async def test_per_request_absolute_limits_refuse_a_create(
    gateway: Gateway, http: aiohttp.ClientSession, tenant: str, user: str
) -> None:
    small = {"quota_metadata_items": 2, "quota_personality": 1, "quota_personality_size": 10}
    ten_bytes, eleven_bytes = "MDEyMzQ1Njc4OQ==", "MDEyMzQ1Njc4OTA="
    async with gateway(**small) as url:
        api = _client(http, url, tenant, user)
        cases = [
            (
                {"metadata": {"a": "1", "b": "2", "c": "3"}},
                "Maximum number of metadata items exceeds 2",
            ),
            (
                {"personality": [{"path": "/a", "contents": ten_bytes}] * 2},
                "Personality file limit exceeded",
            ),
            (
                {"personality": [{"path": "/a", "contents": eleven_bytes}]},
                "Personality file content too long",
            ),
        ]
        for extra, message in cases:
            reply = await api.create_server("too-much", IMAGE, **extra)
            assert reply.status == 413, extra
            assert reply.headers["Retry-After"] == "0"
            assert reply.body["overLimit"]["message"] == message
        assert (await api.get("/servers")).body["servers"] == []
        fits = await api.create_server(
            "just-fits",
            IMAGE,
            metadata={"a": "1", "b": "2"},
            personality=[{"path": "/a", "contents": ten_bytes}],
        )
        assert fits.status == 202
        await api.delete_and_wait(fits.body["server"]["id"])


async def test_check_resize_counts_growth_against_the_project_quota(
    system: System, tmp_path: Path, api: ComputeClient
) -> None:
    assert system.pool is not None
    settings = settings_for(tmp_path, quota_cores=3, quota_ram_mb=4096)
    server_id = (await api.create_server("grows", IMAGE, "2")).body["server"]["id"]  # 1, 2048
    try:
        async with system.pool.acquire() as conn, conn.transaction():
            await quotas.check_resize(conn, settings, api.tenant, 2, 2048)  # just fits
            await quotas.check_resize(conn, settings, api.tenant, -1, -1024)  # shrinking
            with pytest.raises(OverLimit) as raised:
                await quotas.check_resize(conn, settings, api.tenant, 3, 0)
            assert raised.value.message == (
                "Quota exceeded for cores: Requested 3, but already used 1 of 3 cores"
            )
            with pytest.raises(OverLimit) as raised:
                await quotas.check_resize(conn, settings, api.tenant, 4, 4096)
            assert raised.value.message.startswith("Quota exceeded for cores,ram: Requested 4,")
            assert raised.value.headers == {"Retry-After": "0"}
        async with system.pool.acquire() as conn:
            with pytest.raises(RuntimeError, match="inside the transaction"):
                await quotas.check_resize(conn, settings, api.tenant, 1, 0)
    finally:
        await api.delete_and_wait(server_id)


def test_check_metadata_items_and_personality_follow_the_settings(tmp_path: Path) -> None:
    settings = quotas.defaults(settings_for(tmp_path, quota_metadata_items=3, quota_personality=-1))
    quotas.check_metadata_items(settings, 3)
    with pytest.raises(OverLimit, match="Maximum number of metadata items exceeds 3"):
        quotas.check_metadata_items(settings, 4)
    unlimited = quotas.defaults(settings_for(tmp_path, quota_metadata_items=-1))
    quotas.check_metadata_items(unlimited, 10_000)
    quotas.check_personality(settings, [PersonalityFile(path="/f", contents="YQ==")] * 50)
