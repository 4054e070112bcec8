"""Request bodies of the metadata resources (Tables 2.9–2.11), JSON or XML alike.

``{"metadata": {"k": "v", ...}}`` / ``<metadata><meta key="k">v</meta>...</metadata>`` for the
whole set, ``{"meta": {"k": "v"}}`` / ``<meta key="k">v</meta>`` for one item. Keys are 1–255
characters, values at most 255, both strings; anything else is a 400. A member beside
``metadata`` or ``meta`` (in XML an attribute of the root, or a child other than ``<meta>``)
is 400 naming it, as nova v2.1's schemas refuse it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from api_gateway.http.faults import BadRequest
from api_gateway.schemas.servers import MetaKey, MetaValue


class MetadataBody(BaseModel):
    """Set Metadata (PUT) and Update Metadata (POST)."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[MetaKey, MetaValue]


class MetaItemBody(BaseModel):
    """Set Metadata Item (PUT on a key)."""

    model_config = ConfigDict(extra="forbid")

    meta: dict[MetaKey, MetaValue]

    def value_for(self, key: str) -> str:
        """The value for the URI's ``key``: the body must hold that key and nothing else
        (checked in this order, with the reference implementation's messages)."""
        if key not in self.meta:
            raise BadRequest("Request body and URI mismatch")
        if len(self.meta) > 1:
            raise BadRequest("Request body contains too many items")
        return self.meta[key]
