"""The request body of ``os-getConsoleOutput`` (nova's os-console-output): how many of the
log's last lines the caller wants.

``{"os-getConsoleOutput": {"length": N}}``, or in XML ``<os-getConsoleOutput length="N"/>``
(http/xml_body.py: the attribute is a member, its value text). ``length`` is an integer or
its text (XML has nothing else, and nova took ``"5"`` in JSON too); absent, ``null`` or -1
means the whole log (nova v2.1's -1). Anything else (``"abc"``, -2, 1.5, ``true``) is 400,
where nova 2013.1 took any negative and ``int()`` of it cut the log's head instead. Other
members are 400, as nova v2.1's schema answered.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from api_gateway.http.faults import BadRequest
from api_gateway.schemas.common import validate
from api_gateway.schemas.server_actions import members

#: nova's words for a body whose action value is no object
MALFORMED = "os-getConsoleOutput malformed or missing from request body"
#: nova's words for a length that is no integer
NOT_AN_INTEGER = "Length in request body must be an integer value"

#: the whole log
ALL = -1
#: more lines than any log has (a host gives at most 100 KiB): what a bigger length becomes,
#: so the call carries a reasonable number
MOST = 10**9

#: an integer's text: digits, maybe a minus (nova v2.1's pattern: no sign, no spaces)
_INTEGER = re.compile(r"-?[0-9]+")


class _Members(BaseModel):
    model_config = ConfigDict(extra="forbid")

    length: Any = None


def console_output(value: Any) -> int | None:
    """The number of the log's last lines asked for; None for the whole log."""
    if value is not None and not isinstance(value, dict):
        raise BadRequest(MALFORMED)
    return length(validate(_Members, members(value)).length)


def length(value: object) -> int | None:
    """``length`` as given (an integer, its text, or null); None for the whole log."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest(NOT_AN_INTEGER)
    text = str(value)
    if _INTEGER.fullmatch(text) is None:
        raise BadRequest(NOT_AN_INTEGER)
    try:
        lines = int(text)
    except ValueError:  # more digits than Python converts: no log has that many lines
        raise BadRequest(NOT_AN_INTEGER) from None
    if lines < ALL:
        raise BadRequest(f"Length in request body must be -1 (the whole log) or more, not {lines}")
    return None if lines == ALL else min(lines, MOST)
