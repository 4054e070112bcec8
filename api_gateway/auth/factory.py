"""The strategy ``STRATUS_AUTH_STRATEGY`` names."""

from __future__ import annotations

from api_gateway.auth import AuthStrategy
from api_gateway.auth.keystone import KeystoneAuth
from api_gateway.auth.noauth import NoAuth
from shared.config import Settings


def create_strategy(settings: Settings) -> AuthStrategy:
    if settings.auth_strategy == "keystone":
        return KeystoneAuth(settings)
    return NoAuth()
