"""Signed URLs of images' data: how a compute agent downloads an image from the image API, and
stores the image of a server it saved, without a user's token (docs/architecture.md, "Images
on hosts").

The gateway serves ``GET`` and ``PUT /image/internal/images/{id}/file?expires=…&signature=…``
to whoever holds a signature of the method, the image id and the expiry under the
deployment's message key
(``STRATUS_MESSAGE_KEY``, which gateways and agents share already: shared/sealing.py). A
signature names one image and ends at its expiry, so one seen in a log or a proxy opens
nothing else, and not for long.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlencode

from shared.sealing import Keyring

#: the route, under the gateway's root (the image API's own ``/image`` prefix included)
PATH = "/image/internal/images/{image_id}/file"


def _signed_text(method: str, image_id: uuid.UUID, expires: int) -> str:
    return f"{method} image {image_id} until {expires}"


def signed_url(
    base: str, keyring: Keyring, image_id: uuid.UUID, ttl_s: float, *, method: str = "GET"
) -> str:
    """The URL of ``image_id``'s data at the gateway ``base`` (``http://host:port``), good
    for ``ttl_s`` seconds and for ``method`` only (``GET`` downloads; ``PUT`` stores the
    data of an image a host is saving, createImage's)."""
    expires = int(time.time() + ttl_s)
    signature = keyring.sign(_signed_text(method, image_id, expires))
    query = urlencode({"expires": expires, "signature": signature})
    return f"{base.rstrip('/')}{PATH.format(image_id=image_id)}?{query}"


def is_signed(
    keyring: Keyring, method: str, image_id: uuid.UUID, expires: str, signature: str
) -> bool:
    """Was this URL signed for ``method`` on ``image_id``, and is it still good?"""
    try:
        until = int(expires)
    except ValueError:
        return False
    text = _signed_text(method, image_id, until)
    return until >= time.time() and keyring.verify(text, signature)
