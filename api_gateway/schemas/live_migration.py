"""The request body of ``os-migrateLive`` (guide 3.1 `os-migrateLive`, Table 3.2; Ex 3.20/3.21).

``block_migration`` and ``disk_over_commit`` are required; one missing (or empty) is answered
as the reference implementation answered it. ``host`` may be ``null`` or left out (nova
2013.2, what ``nova live-migration SERVER`` and openstacksdk send): the conductor's scheduler
then picks the destination (in XML: no ``<host>`` element, or an empty one); ``""`` is still
missing. The XML form puts the members in child elements, which arrive as text:
``block_migration`` and ``disk_over_commit`` are then text, turned into booleans here as
nova v2.1 reads a boolean (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``).
(nova 2013.1 passed the text on, so ``"false"`` counted as true; we do not copy that.)
Anything else is a 400, a member nova v2.1's schema does not allow (2.25's ``force``, a
misspelling) included, naming it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api_gateway.http.faults import BadRequest
from api_gateway.schemas.common import Boolean, validate

MISSING = "host and block_migration must be specified."

_REQUIRED = ("block_migration", "disk_over_commit")


class LiveMigrate(BaseModel):
    """Table 3.2: the destination host (None: the scheduler picks one), and whether the
    local disks go along (``block_migration``; the guide's "migration will be blocked" is a
    defect of the guide) and the destination's free disk may be over-committed
    (``disk_over_commit``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = Field(default=None, min_length=1, max_length=255)
    block_migration: Boolean
    disk_over_commit: Boolean


def live_migrate(value: Any) -> LiveMigrate:
    """``value`` (the object under ``os-migrateLive``) as a LiveMigrate, or 400."""
    if not isinstance(value, dict) or any(value.get(name) in (None, "") for name in _REQUIRED):
        raise BadRequest(MISSING)
    if value.get("host") == "":
        raise BadRequest(MISSING)
    return validate(LiveMigrate, value)
