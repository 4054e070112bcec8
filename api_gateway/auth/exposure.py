"""Whether this gateway may serve ``noauth`` where it listens.

With ``noauth`` the token ``admin:x`` is an administrator of the whole cloud, so such a gateway
on a reachable address is an open cloud. It is meant for a developer's own machine: the gateway
refuses to start with it on anything but a loopback address, unless the operator says that the
address is private (``STRATUS_NOAUTH_ALLOW_REMOTE``, as the compose file does for gateways
that only its proxy on 127.0.0.1 reaches); then every start says so in a WARNING.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from shared.config import Settings

log = logging.getLogger(__name__)


class UnsafeExposure(Exception):
    """The settings would serve an unauthenticated cloud beyond this machine."""


def is_loopback(host: str) -> bool:
    """Does listening on ``host`` reach only this machine? A name counts when every address
    it resolves to is a loopback address; ``""``, ``0.0.0.0`` and ``::`` are every interface."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_exposure(settings: Settings) -> None:
    """Raise ``UnsafeExposure`` for a ``noauth`` gateway listening beyond loopback, unless
    allowed; warn when allowed."""
    if settings.auth_strategy != "noauth" or is_loopback(settings.api_host):
        return
    if not settings.noauth_allow_remote:
        raise UnsafeExposure(
            f"refusing to serve STRATUS_AUTH_STRATEGY=noauth on STRATUS_API_HOST="
            f"{settings.api_host!r} (anyone reaching it is an administrator): use "
            "STRATUS_AUTH_STRATEGY=keystone, listen on 127.0.0.1, or set "
            "STRATUS_NOAUTH_ALLOW_REMOTE=true if only trusted peers can reach that address"
        )
    log.warning(
        "serving noauth on %s (STRATUS_NOAUTH_ALLOW_REMOTE=true): whoever reaches this "
        "address is an administrator of the whole cloud",
        settings.api_host,
    )
