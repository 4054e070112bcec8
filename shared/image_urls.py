"""Signed URLs of the image service's data for compute agents: how an agent downloads an
image, stores the image of a server it saved, hands a resized server's disk to another host
and reads a file an image's metadata names, without a user's token (docs/architecture.md,
"Images on hosts").

The gateway serves these routes (``HostResource``) to whoever holds, in ``?expires=…&
signature=…``, a signature of the method, the route, the key (an image id, a server id, a
file name) and the expiry under the deployment's message key (``STRATUS_MESSAGE_KEY``, which
gateways and agents share already: shared/sealing.py). A signature names one thing for one
method and ends at its expiry, so one seen in a log or a proxy opens nothing else, and not
for long.
"""

from __future__ import annotations

import time
from enum import StrEnum
from urllib.parse import quote, urlencode

from shared.sealing import Keyring


class HostResource(StrEnum):
    """The routes (under the gateway's root) a signed URL opens."""

    #: an image's data: GET (a host's download), PUT (the image a host saved)
    IMAGE = "/image/internal/images/{key}/file"
    #: a resized server's disk on its way to another host: PUT, GET, DELETE
    TRANSFER = "/image/internal/transfers/{key}"
    #: a file of the image store an image's metadata names (a kernel, an initrd): GET
    FILE = "/image/internal/files/{key}"


#: the image route, as the router names it
PATH = HostResource.IMAGE.replace("{key}", "{image_id}")


def _signed_text(method: str, resource: HostResource, key: str, expires: int) -> str:
    return f"{method} {resource.value} {key} until {expires}"


def signed_url(
    base: str,
    keyring: Keyring,
    resource: HostResource,
    key: object,
    ttl_s: float,
    *,
    method: str = "GET",
) -> str:
    """The URL of ``resource`` ``key`` at the gateway ``base`` (``http://host:port``), good
    for ``ttl_s`` seconds and for ``method`` only."""
    expires = int(time.time() + ttl_s)
    signature = keyring.sign(_signed_text(method, resource, str(key), expires))
    query = urlencode({"expires": expires, "signature": signature})
    path = resource.value.format(key=quote(str(key), safe=""))
    return f"{base.rstrip('/')}{path}?{query}"


def is_signed(
    keyring: Keyring,
    method: str,
    resource: HostResource,
    key: object,
    expires: str,
    signature: str,
) -> bool:
    """Was this URL signed for ``method`` on ``resource`` ``key``, and is it still good?"""
    try:
        until = int(expires)
    except ValueError:
        return False
    text = _signed_text(method, resource, str(key), until)
    return until >= time.time() and keyring.verify(text, signature)
