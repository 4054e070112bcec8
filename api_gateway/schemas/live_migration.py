"""The request body of ``os-migrateLive`` (guide 3.1 `os-migrateLive`, Table 3.2; Ex 3.20/3.21).

``block_migration`` and ``disk_over_commit`` are required; one missing (or empty) is answered
as the reference implementation answered it. ``host`` may be ``null`` or left out (nova
2013.2, what ``nova live-migration SERVER`` and openstacksdk send): the conductor's scheduler
then picks the destination (in XML: no ``<host>`` element, or an empty one); ``""`` is still
missing. The XML form puts the members in child elements, which arrive as text:
``block_migration`` and ``disk_over_commit`` are then ``"true"`` or ``"false"``, turned into
booleans here exactly as the JSON form gives them. (nova 2013.1 passed the text
on, so ``"false"`` counted as true; we do not copy that.) Anything else is a 400.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api_gateway.http.faults import BadRequest
from api_gateway.schemas.common import validate

MISSING = "host and block_migration must be specified."

_REQUIRED = ("block_migration", "disk_over_commit")
_TEXT = {"true": True, "false": False}


def _boolean(value: object) -> object:
    """A JSON boolean, or the text of one (XML): ``true``/``false`` in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TEXT:
        return _TEXT[value.strip().lower()]
    raise ValueError("must be true or false")


Boolean = Annotated[bool, BeforeValidator(_boolean)]


class LiveMigrate(BaseModel):
    """Table 3.2: the destination host (None: the scheduler picks one), and whether the
    local disks go along (``block_migration``; the guide's "migration will be blocked" is a
    defect of the guide) and the destination's free disk may be over-committed
    (``disk_over_commit``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

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
