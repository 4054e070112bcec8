"""The query parameters of the server and image lists (guide 1.5, 2.1.1, 2.5.1).

A filter that cannot match anything (a status no server shows by default, an image reference
that is not an id) makes the list empty, as in the reference implementation; a value that
does not parse at all (``changes-since``, ``minRam``) is a 400. Parameters we do not know are
ignored. The result is the query of shared/db (``ServerFilters``, ``ImageFilters``), or None
for "nothing can match".
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlparse

from api_gateway.http.faults import BadRequest
from api_gateway.views.images import KNOWN_SERVICE_STATUSES, service_statuses
from shared.db.images import ImageFilters
from shared.db.servers import ServerFilters
from shared.states import vm_states_for_status

#: A zone offset whose ``+`` an unencoded query string turned into a space.
_SPACED_OFFSET = re.compile(r"(?<=\d) (?=\d{2}(?::?\d{2})?$)")


def text(query: Mapping[str, str], name: str) -> str | None:
    """A text parameter; a NUL character (which PostgreSQL cannot compare) is a 400."""
    value = query.get(name)
    if value is not None and "\x00" in value:
        raise BadRequest(f"Invalid {name} filter: it contains a NUL character")
    return value


def reference(query: Mapping[str, str], name: str) -> str | None:
    """An id given as itself or as a URL whose last path segment is the id (guide 1.3)."""
    value = text(query, name)
    if value is None or "/" not in value:
        return value
    try:
        path = urlparse(value).path
    except ValueError:  # not a URL at all ("http://[", an unclosed IPv6 host): an id of nothing
        return value
    return path.rstrip("/").rsplit("/", 1)[-1]


#: The range of the integer columns the integer filters compare with.
_INT32 = range(-(2**31), 2**31)


def integer(query: Mapping[str, str], name: str) -> int | None:
    """An integer parameter; anything else (or one no column could hold) is a 400."""
    value = query.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number not in _INT32:
        raise BadRequest(f"Invalid {name} filter [{value}]")
    return number


def instant(value: str) -> datetime:
    """An ISO 8601 dateTime (``2011-01-24T17:08Z``, ``2011-01-24T17:08:00``, with or without
    a zone offset; no zone means UTC) as an aware datetime; anything else is a 400."""
    try:
        moment = datetime.fromisoformat(_SPACED_OFFSET.sub("+", value.strip()))
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadRequest(f"Invalid changes-since value: {value!r}") from None


def changes_since(query: Mapping[str, str]) -> datetime | None:
    value = query.get("changes-since")
    return None if value is None else instant(value)


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


#: The longest ``name`` filter accepted: a server's name is at most 255 characters, and a
#: longer pattern is no search a user types but work pushed onto the database.
MAX_NAME_FILTER = 255


def name_pattern(query: Mapping[str, str]) -> str | None:
    """The ``name`` filter, a regular expression (as in nova), checked before any query runs:
    too long or not a regular expression is a 400, not a statement for PostgreSQL to refuse.
    Python's syntax is the judge here; PostgreSQL's own refusal (its dialect differs at the
    edges) is still a 400 where the list runs."""
    pattern = text(query, "name")
    if pattern is None:
        return None
    if len(pattern) > MAX_NAME_FILTER:
        raise BadRequest(f"Invalid name filter: longer than {MAX_NAME_FILTER} characters")
    try:
        with warnings.catch_warnings():
            # POSIX classes such as [[:alpha:]] are valid for PostgreSQL; Python only warns
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise BadRequest(f"Invalid name filter (not a regular expression): {exc}") from None
    return pattern


def server_filters(query: Mapping[str, str]) -> ServerFilters | None:
    """The filters of ``GET /servers[/detail]``; None when nothing can match."""
    since = changes_since(query)
    image = reference(query, "image")
    image_id = _uuid_or_none(image) if image is not None else None
    if image is not None and image_id is None:
        return None  # no server is built from an image whose id is not a UUID
    status = text(query, "status")
    vm_states = None
    if status is not None:
        states = vm_states_for_status(status.upper())
        if states is None:
            return None  # REBOOT, RESIZE...: transient statuses match nothing
        vm_states = frozenset(str(state) for state in states)
    return ServerFilters(
        image_id=image_id,
        flavor_id=reference(query, "flavor"),
        name_regex=name_pattern(query),
        vm_states=vm_states,
        changes_since=since,
        reservation_id=text(query, "reservation_id"),
    )


def _image_type(value: str) -> tuple[bool | None, str | None]:
    """(base, image_type) for the ``type`` filter: the guide's BASE | SERVER | ALL, or an
    image type as the reference implementation compared it (``snapshot``, ``backup``)."""
    kind = value.upper()
    if kind == "ALL":
        return None, None
    if kind in ("BASE", "SERVER"):
        return kind == "BASE", None
    return None, value.lower()


def image_filters(query: Mapping[str, str]) -> ImageFilters | None:
    """The filters of ``GET /images[/detail]``; None when nothing can match."""
    since = changes_since(query)
    min_disk, min_ram = integer(query, "minDisk"), integer(query, "minRam")
    server = reference(query, "server")
    server_id = _uuid_or_none(server) if server is not None else None
    if server is not None and server_id is None:
        return None
    status_in: frozenset[str] | None = None
    status_not_in: frozenset[str] | None = None
    status = text(query, "status")
    if status is not None and status.upper() == "UNKNOWN":
        status_not_in = KNOWN_SERVICE_STATUSES
    elif status is not None:
        status_in = service_statuses(status.upper())
        if not status_in:
            return None
    kind = text(query, "type")
    base, image_type = _image_type(kind) if kind is not None else (None, None)
    return ImageFilters(
        server_id=server_id,
        name=text(query, "name"),
        status_in=status_in,
        status_not_in=status_not_in,
        base=base,
        image_type=image_type,
        min_disk_gb=min_disk,
        min_ram_mb=min_ram,
        changes_since=since,
    )
