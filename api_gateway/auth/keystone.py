"""``keystone``: tokens issued and validated by Keystone v3 (a drop-in compute service in a
Keystone-run cloud, as nova behind keystonemiddleware).

A token is validated once and its verdict cached (api_gateway/auth/token_cache.py) until the
token expires; Keystone is asked again after ``STRATUS_KEYSTONE_REVALIDATE_S``, so a revoked
token stops working within that time. Many requests arriving together with one unknown token
make one call to Keystone. When Keystone cannot be reached, the tokens whose verdict is cached
keep working until they expire (a short outage goes unnoticed); an unknown token then gets
503, since nobody can say whether it is valid.

A missing, invalid, expired or revoked token is answered 401 with
``WWW-Authenticate: Keystone uri="<keystone url>"``, which tells clients where to get one.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from api_gateway.auth import AuthStrategy, Identity
from api_gateway.auth.keystone_client import KeystoneClient, KeystoneUnavailable, TokenInfo
from api_gateway.auth.token_cache import TokenCache, Verdict, digest
from api_gateway.http.faults import ServiceUnavailable, Unauthorized
from shared.config import Settings

log = logging.getLogger(__name__)

#: How long a client is asked to wait when Keystone cannot be reached.
RETRY_AFTER_S = 5


class KeystoneAuth(AuthStrategy):
    def __init__(self, settings: Settings, client: KeystoneClient | None = None) -> None:
        assert settings.keystone_url is not None
        self.client = client or KeystoneClient(settings)
        self.cache = TokenCache(settings.keystone_cache_entries)
        self.revalidate_s = settings.keystone_revalidate_s
        self.challenge = {"WWW-Authenticate": f'Keystone uri="{settings.keystone_url}"'}
        self._pending: dict[str, asyncio.Future[TokenInfo | None]] = {}

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def identify(self, request: web.Request) -> Identity:
        token = request.headers.get("X-Auth-Token", "").strip()
        if not token:
            raise self._unauthorized("Authentication required: send a Keystone token.")
        info = await self._token_info(token)
        if info is None:
            raise self._unauthorized("The token is invalid, expired or revoked.")
        return Identity(user_id=info.user_id, project_id=info.project_id, roles=info.roles)

    async def _token_info(self, token: str) -> TokenInfo | None:
        """What is known of ``token``: from the cache while its verdict is fresh, else from
        Keystone; a stale verdict of a valid token stands in while Keystone is away."""
        key = digest(token)
        cached = self.cache.get(key)
        if cached is not None and cached.info is not None and cached.info.expired():
            self.cache.drop(key)
            return None
        if cached is not None and self.cache.age(cached) < self.revalidate_s:
            return cached.info
        try:
            info = await self._validate(key, token)
        except KeystoneUnavailable as exc:
            return self._during_outage(cached, exc)
        if info is not None and info.expired():
            info = None
        self.cache.put(key, info)
        return info

    def _during_outage(self, cached: Verdict | None, exc: KeystoneUnavailable) -> TokenInfo | None:
        if cached is not None:
            log.warning("Keystone unavailable (%s); serving a cached token", exc)
            return cached.info
        log.error("Keystone unavailable: %s", exc)
        raise ServiceUnavailable(
            "The identity service cannot be reached; try again later.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def _validate(self, key: str, token: str) -> TokenInfo | None:
        """Ask Keystone, once for all the requests waiting on the same token. The call goes
        on when the request that started it is cancelled (its client went away): the others
        still wait for it."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self.client.validate(token))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)

    def _settled(self, key: str, done: asyncio.Future[TokenInfo | None]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved, even when every waiter went away

    def _unauthorized(self, message: str) -> Unauthorized:
        return Unauthorized(message, headers=self.challenge)
