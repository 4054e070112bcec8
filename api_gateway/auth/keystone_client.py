"""Keystone v3 as the gateway speaks to it: its own service token, and the validation of the
tokens clients present (``GET /v3/auth/tokens`` with ``X-Subject-Token``).

Only the HTTP conversation lives here; what is cached, for how long, and what a client is
answered is api_gateway/auth/keystone.py's business. Everything is asynchronous (aiohttp):
a slow or absent Keystone never blocks the event loop, it only makes the calls that need it
wait (at most ``STRATUS_KEYSTONE_TIMEOUT_S``) and then fail with ``KeystoneUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from shared.config import Settings

log = logging.getLogger(__name__)

#: A service token is renewed when less than this much of its life is left (or half of its
#: whole life, for a Keystone configured with very short tokens).
RENEW_BEFORE = timedelta(minutes=5)


class KeystoneUnavailable(Exception):
    """Keystone could not give an answer: unreachable, too slow, erring, or refusing the
    gateway's own credentials. Nothing can be said of the token being validated."""


@dataclass(frozen=True)
class TokenInfo:
    """What Keystone says of a valid token."""

    user_id: str
    user_name: str
    #: the project the token is scoped to; None for an unscoped or domain/system token
    project_id: str | None
    #: role names, lower-cased, with the implied roles Keystone expanded (admin -> member ...)
    roles: frozenset[str]
    expires_at: datetime

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at


def identity_url(configured: str) -> str:
    """The v3 API root from the configured URL, with or without its ``/v3``."""
    url = configured.rstrip("/")
    return url if url.endswith("/v3") else f"{url}/v3"


def parse_token(body: Any) -> TokenInfo:
    """The ``token`` document of ``POST``/``GET /v3/auth/tokens`` as a TokenInfo; raises
    ValueError when it is not one."""
    try:
        token = body["token"]
        project = token.get("project") or {}
        return TokenInfo(
            user_id=str(token["user"]["id"]),
            user_name=str(token["user"].get("name", "")),
            project_id=str(project["id"]) if project.get("id") else None,
            roles=frozenset(str(r["name"]).lower() for r in token.get("roles") or ()),
            expires_at=_instant(token["expires_at"]),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a Keystone token document: {exc!r}") from None


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class KeystoneClient:
    """Validates tokens with the gateway's own service token, which it obtains with the
    service user's password and renews before it expires (or at once, when Keystone stops
    accepting it)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.keystone_url and settings.keystone_password is not None
        self.url = identity_url(settings.keystone_url)
        self._credentials = {
            "user": {
                "name": settings.keystone_username,
                "domain": {"name": settings.keystone_domain},
                "password": settings.keystone_password.get_secret_value(),
            }
        }
        self._scope = {
            "project": {
                "name": settings.keystone_project,
                "domain": {"name": settings.keystone_domain},
            }
        }
        self._timeout = aiohttp.ClientTimeout(total=settings.keystone_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._service: tuple[str, datetime] | None = None  # token, when to renew it
        self._renewing = asyncio.Lock()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KeystoneClient.start() was not called")
        return self._session

    async def validate(self, token: str) -> TokenInfo | None:
        """What Keystone says of ``token``: its TokenInfo, or None when Keystone does not
        know it as a valid token (malformed, expired, revoked: 404). Raises
        ``KeystoneUnavailable`` when Keystone cannot say."""
        status, body = await self._validate_once(token, renew=False)
        if status == 401:  # our own token was revoked, or Keystone's keys changed
            log.info("Keystone refused the service token; getting a new one")
            status, body = await self._validate_once(token, renew=True)
        if status == 200:
            try:
                return parse_token(body)
            except ValueError as exc:
                raise KeystoneUnavailable(str(exc)) from None
        if status == 404:
            return None
        if status == 403:
            log.error(
                "Keystone does not let the service user validate tokens: give it the "
                "'service' (or 'admin') role in its project"
            )
        raise KeystoneUnavailable(f"Keystone answered {status} to a token validation")

    async def _validate_once(self, token: str, *, renew: bool) -> tuple[int, Any]:
        service = await self._service_token(renew=renew)
        headers = {"X-Auth-Token": service, "X-Subject-Token": token}
        status, body, _ = await self._request("GET", "/auth/tokens", headers=headers)
        return status, body

    async def _service_token(self, *, renew: bool) -> str:
        """The gateway's token; a new one when asked (``renew``), when there is none, or when
        the current one is close to its expiry. One renewal at a time."""
        current = self._service
        if not renew and current is not None and datetime.now(UTC) < current[1]:
            return current[0]
        async with self._renewing:
            if self._service is not current and self._service is not None:
                return self._service[0]  # another request renewed it meanwhile
            self._service = await self._issue()
            return self._service[0]

    async def _issue(self) -> tuple[str, datetime]:
        body = {
            "auth": {
                "identity": {"methods": ["password"], "password": self._credentials},
                "scope": self._scope,
            }
        }
        status, document, headers = await self._request("POST", "/auth/tokens", json=body)
        token = headers.get("X-Subject-Token")
        if status != 201 or not token:
            raise KeystoneUnavailable(
                f"Keystone refused the service user's credentials ({status}): check "
                "STRATUS_KEYSTONE_USERNAME, _PASSWORD, _PROJECT and _DOMAIN"
            )
        try:
            info = parse_token(document)
        except ValueError as exc:
            raise KeystoneUnavailable(str(exc)) from None
        lifetime = info.expires_at - datetime.now(UTC)
        renew_at = info.expires_at - min(RENEW_BEFORE, lifetime / 2)
        log.info("got a service token from Keystone, valid until %s", info.expires_at)
        return token, renew_at

    async def _request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """One request; status, JSON body (None if there is none) and headers. 5xx,
        connection errors and time-outs are ``KeystoneUnavailable``."""
        try:
            async with self.session.request(
                method, f"{self.url}{path}", headers=headers, json=json
            ) as response:
                if response.status >= 500:
                    raise KeystoneUnavailable(f"Keystone answered {response.status}")
                body = await response.json(content_type=None) if response.status < 300 else None
                return response.status, body, response.headers.copy()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise KeystoneUnavailable(f"cannot reach Keystone at {self.url}: {exc!r}") from None
