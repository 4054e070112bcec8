"""The keystone strategy against a Keystone that can misbehave (tests/support/fake_keystone.py):
validation, the token cache, revocation, outages, the service token, and the scope rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pydantic
import pytest
from aiohttp.test_utils import make_mocked_request

from api_gateway.auth import Identity, context_for
from api_gateway.auth.keystone import KeystoneAuth
from api_gateway.http.faults import Forbidden, ServiceUnavailable, Unauthorized
from shared.config import Settings
from tests.support.fake_keystone import (
    SERVICE_PASSWORD,
    SERVICE_PROJECT,
    SERVICE_USER,
    FakeKeystone,
    fake_keystone,
)


def keystone_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_strategy": "keystone",
        "keystone_url": url,
        "keystone_username": SERVICE_USER,
        "keystone_password": SERVICE_PASSWORD,
        "keystone_project": SERVICE_PROJECT,
        **overrides,
    }
    return Settings.model_validate(values)


@pytest.fixture
async def keystone() -> AsyncIterator[FakeKeystone]:
    async with fake_keystone() as the_keystone:
        yield the_keystone


@pytest.fixture
async def auth(keystone: FakeKeystone) -> AsyncIterator[KeystoneAuth]:
    strategy = KeystoneAuth(keystone_settings(keystone.url))
    await strategy.start()
    yield strategy
    await strategy.close()


def request(token: str | None, method: str = "GET") -> Any:
    headers = {} if token is None else {"X-Auth-Token": token}
    return make_mocked_request(method, "/v2/p-demo/servers", headers=headers)


async def test_a_valid_token_names_its_user_project_and_roles(
    auth: KeystoneAuth, keystone: FakeKeystone
) -> None:
    token = keystone.token("p-demo", "Member", "reader", user_id="alice")
    identity = await auth.identify(request(token))
    assert identity == Identity("alice", "p-demo", frozenset({"member", "reader"}))
    assert not identity.is_admin


async def test_a_token_is_validated_once_then_cached(
    auth: KeystoneAuth, keystone: FakeKeystone
) -> None:
    token = keystone.token("p-demo", "member")
    identities = await asyncio.gather(*(auth.identify(request(token)) for _ in range(50)))
    assert {i.project_id for i in identities} == {"p-demo"}
    await auth.identify(request(token))
    assert keystone.validations == 1


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
async def test_a_missing_or_unknown_token_is_401_with_the_keystone_challenge(
    auth: KeystoneAuth, keystone: FakeKeystone, token: str | None
) -> None:
    with pytest.raises(Unauthorized) as refused:
        await auth.identify(request(token))
    assert refused.value.headers == {"WWW-Authenticate": f'Keystone uri="{keystone.url}"'}


async def test_an_invalid_token_is_remembered_as_invalid(
    auth: KeystoneAuth, keystone: FakeKeystone
) -> None:
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await auth.identify(request("forged"))
    assert keystone.validations == 1


async def test_a_cached_token_is_refused_once_it_expires(
    auth: KeystoneAuth, keystone: FakeKeystone
) -> None:
    token = keystone.token("p-demo", "member", lifetime=timedelta(seconds=1))
    await auth.identify(request(token))
    await asyncio.sleep(1.1)
    with pytest.raises(Unauthorized):
        await auth.identify(request(token))


async def test_a_revoked_token_stops_working_when_it_is_revalidated(
    keystone: FakeKeystone,
) -> None:
    strategy = KeystoneAuth(keystone_settings(keystone.url, keystone_revalidate_s=0.2))
    await strategy.start()
    try:
        token = keystone.token("p-demo", "member")
        await strategy.identify(request(token))
        keystone.revoke(token)
        await strategy.identify(request(token))  # still trusted: the verdict is fresh
        await asyncio.sleep(0.25)
        with pytest.raises(Unauthorized):
            await strategy.identify(request(token))
    finally:
        await strategy.close()


async def test_cached_tokens_keep_working_while_keystone_is_away(
    keystone: FakeKeystone,
) -> None:
    strategy = KeystoneAuth(keystone_settings(keystone.url, keystone_revalidate_s=0.05))
    await strategy.start()
    try:
        known = keystone.token("p-demo", "member", user_id="alice")
        await strategy.identify(request(known))
        keystone.down = True
        await asyncio.sleep(0.1)  # the verdict is stale: Keystone would be asked again
        assert (await strategy.identify(request(known))).user_id == "alice"
        with pytest.raises(ServiceUnavailable) as unavailable:
            await strategy.identify(request(keystone.token("p-demo", "member")))
        assert unavailable.value.headers["Retry-After"] == "5"
        keystone.down = False
        assert (await strategy.identify(request(known))).user_id == "alice"
    finally:
        await strategy.close()


async def test_an_unreachable_keystone_is_503_not_401(keystone: FakeKeystone) -> None:
    strategy = KeystoneAuth(keystone_settings("http://127.0.0.1:9/v3", keystone_timeout_s=1))
    await strategy.start()
    try:
        with pytest.raises(ServiceUnavailable):
            await strategy.identify(request("any"))
    finally:
        await strategy.close()


async def test_a_refused_service_token_is_replaced_at_once(
    auth: KeystoneAuth, keystone: FakeKeystone
) -> None:
    await auth.identify(request(keystone.token("p-demo", "member")))
    keystone.rotate_keys()
    await auth.identify(request(keystone.token("p-demo", "member")))
    assert keystone.issued == 2


async def test_the_service_token_is_renewed_before_it_expires(keystone: FakeKeystone) -> None:
    keystone.service_lifetime = timedelta(seconds=1)
    strategy = KeystoneAuth(keystone_settings(keystone.url))
    await strategy.start()
    try:
        await strategy.identify(request(keystone.token("p-demo", "member")))
        await asyncio.sleep(0.6)  # past half its life
        await strategy.identify(request(keystone.token("p-demo", "member")))
        assert keystone.issued == 2
    finally:
        await strategy.close()


async def test_wrong_service_credentials_are_503(keystone: FakeKeystone) -> None:
    strategy = KeystoneAuth(keystone_settings(keystone.url, keystone_password="wrong"))
    await strategy.start()
    try:
        with pytest.raises(ServiceUnavailable):
            await strategy.identify(request(keystone.token("p-demo", "member")))
    finally:
        await strategy.close()


async def test_the_cache_is_bounded(keystone: FakeKeystone) -> None:
    strategy = KeystoneAuth(keystone_settings(keystone.url, keystone_cache_entries=2))
    await strategy.start()
    try:
        tokens = [keystone.token("p-demo", "member") for _ in range(3)]
        for token in tokens:
            await strategy.identify(request(token))
        assert len(strategy.cache) == 2
        await strategy.identify(request(tokens[0]))  # evicted: asked again
        assert keystone.validations == 4
    finally:
        await strategy.close()


# --- what an identity may reach (every strategy) ----------------------------------------------


MEMBER = Identity("alice", "p-demo", frozenset({"member", "reader"}))
ADMIN = Identity("root", "p-admin", frozenset({"admin", "member", "reader"}))
READER = Identity("carol", "p-demo", frozenset({"reader"}))


def test_a_member_acts_in_its_own_project_only() -> None:
    assert context_for(MEMBER, "p-demo", request("t"), "req-1").project_id == "p-demo"
    with pytest.raises(Forbidden):
        context_for(MEMBER, "p-other", request("t"), "req-1")


def test_an_administrator_acts_in_the_urls_project() -> None:
    ctx = context_for(ADMIN, "p-demo", request("t", "POST"), "req-1")
    assert (ctx.project_id, ctx.user_id, ctx.is_admin) == ("p-demo", "root", True)


def test_a_reader_may_read_but_not_write() -> None:
    assert context_for(READER, "p-demo", request("t"), "req-1").user_id == "carol"
    for method in ("POST", "PUT", "DELETE"):
        with pytest.raises(Forbidden):
            context_for(READER, "p-demo", request("t", method), "req-1")


def test_a_token_of_no_project_reaches_no_project_url() -> None:
    unscoped = Identity("dave", None, frozenset({"member"}))
    with pytest.raises(Forbidden):
        context_for(unscoped, None, request("t"), "req-1")
    with pytest.raises(Forbidden):
        context_for(unscoped, "p-demo", request("t"), "req-1")


def test_keystone_without_its_settings_stops_at_startup() -> None:
    with pytest.raises(pydantic.ValidationError, match="STRATUS_KEYSTONE_PASSWORD"):
        Settings.model_validate(
            {
                "auth_strategy": "keystone",
                "keystone_url": "http://127.0.0.1:5000/v3",
                "keystone_username": "stratus",
                "keystone_project": "service",
            }
        )
