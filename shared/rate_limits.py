"""Rate limit rules (guide 1.6.1) and the grammar of ``STRATUS_RATE_LIMITS``.

The setting uses the reference implementation's form, one parenthesised rule per limit,
separated by ``;``::

    (POST, "*", .*, 10, MINUTE);(GET, "*changes-since*", .*changes-since.*, 3, MINUTE)

that is ``(VERB, URI, REGEX, VALUE, UNIT)``: the verb a request must have (``ALL`` for any),
the wildcard URI shown to people, the regular expression a program matches, the number of
requests allowed and the unit of time they are allowed per. The empty string means no rate
limits at all.

Each limit is a leaky bucket measured in seconds: the bucket holds one ``UNIT`` of time, every
request pours in ``UNIT / VALUE`` seconds, and it drains one second per second. A burst of
``VALUE`` requests fills it; after that requests are accepted at the steady rate. The
arithmetic lives here so the database statement and ``GET /limits`` agree on it.

This module lives in ``shared`` because the settings model validates the grammar at startup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

#: Seconds per unit (XSD ``TimeUnit``).
UNITS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}

#: The verbs a rule may name (XSD ``HttpMethod``); ``ALL`` matches every method.
VERBS = frozenset({"GET", "DELETE", "POST", "PUT", "HEAD", "OPTIONS", "CONNECT", "TRACE", "ALL"})

#: Table 1.1 of the guide, with the reference implementation's changes-since regex.
DEFAULT_RATE_LIMITS = (
    '(POST, "*", .*, 10, MINUTE);'
    '(POST, "*/servers", ^/servers, 50, DAY);'
    '(PUT, "*", .*, 10, MINUTE);'
    '(GET, "*changes-since*", .*changes-since.*, 3, MINUTE);'
    '(DELETE, "*", .*, 100, MINUTE)'
)

#: Slack for floating point sums: ``VALUE`` pours of ``UNIT / VALUE`` must fit ``UNIT``.
EPSILON = 1e-9

_RULE = re.compile(
    r"""\s*\(\s*
        (?P<verb>[^,\s()]+)\s*,\s*
        (?P<uri>"[^"]*"|[^,]*?)\s*,\s*
        (?P<regex>.*?)\s*,\s*
        (?P<value>[^,\s()]+)\s*,\s*
        (?P<unit>[A-Za-z]+)\s*
    \)\s*(?:;|\Z)""",
    re.VERBOSE,
)

_EXAMPLE = '(POST, "*", .*, 10, MINUTE)'


class RateLimitSyntaxError(ValueError):
    """``STRATUS_RATE_LIMITS`` does not parse; the message says where and what is expected."""


@dataclass(frozen=True)
class RateLimit:
    verb: str
    uri: str
    regex: str
    value: int
    unit: str
    pattern: re.Pattern[str] = field(compare=False, repr=False)

    @property
    def capacity(self) -> float:
        """Seconds the bucket holds: one unit."""
        return float(UNITS[self.unit])

    @property
    def cost(self) -> float:
        """Seconds one request pours into the bucket."""
        return self.capacity / self.value

    @property
    def key(self) -> str:
        """Identifies this limit's counters; stable across processes with the same rule."""
        return f"{self.verb} {self.uri} {self.regex} {self.unit}"

    def applies_to(self, method: str, target: str) -> bool:
        """Whether a request with ``method`` on ``target`` (the path after
        ``/v2/{tenant_id}``, with its query string) counts against this limit."""
        return self.verb in ("ALL", method) and self.pattern.search(target) is not None

    def remaining(self, level: float) -> int:
        """Requests that would still be accepted now, with ``level`` seconds in the bucket."""
        return max(0, math.floor((self.capacity - level) / self.cost + EPSILON))

    def delay(self, level: float) -> float:
        """Seconds until one more request fits, with ``level`` seconds in the bucket."""
        return max(0.0, level + self.cost - self.capacity - EPSILON)

    def describe(self) -> str:
        """The fault's details, in the reference implementation's words."""
        return (
            f"Only {self.value} {self.verb} request(s) can be made to {self.uri} "
            f"every {self.unit.lower()}."
        )

    def __str__(self) -> str:
        return f'({self.verb}, "{self.uri}", {self.regex}, {self.value}, {self.unit})'


def _fail(problem: str, fragment: str) -> RateLimitSyntaxError:
    return RateLimitSyntaxError(
        f"STRATUS_RATE_LIMITS: {problem} in {fragment.strip()!r}; expected rules such as "
        f"{_EXAMPLE} separated by ';' (or an empty value for no rate limits)"
    )


def _rule(match: re.Match[str]) -> RateLimit:
    fragment = match.group(0)
    verb = match["verb"].upper()
    if verb not in VERBS:
        raise _fail(f"unknown verb {match['verb']!r} (one of {', '.join(sorted(VERBS))})", fragment)
    unit = match["unit"].upper()
    if unit not in UNITS:
        raise _fail(f"unknown unit {match['unit']!r} (one of {', '.join(UNITS)})", fragment)
    try:
        value = int(match["value"])
    except ValueError:
        raise _fail(f"the value {match['value']!r} is not an integer", fragment) from None
    if value <= 0:
        raise _fail(f"the value {value} is not positive", fragment)
    regex = match["regex"]
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise _fail(f"the regular expression {regex!r} is invalid ({exc})", fragment) from None
    uri = match["uri"].strip('"')
    return RateLimit(verb, uri, regex, value, unit, pattern)


def parse_rate_limits(text: str) -> tuple[RateLimit, ...]:
    """The rules of a ``STRATUS_RATE_LIMITS`` value, in order; raises RateLimitSyntaxError."""
    rules: list[RateLimit] = []
    position = 0
    while position < len(text) and text[position:].strip():
        match = _RULE.match(text, position)
        if match is None:
            raise _fail("a malformed rule", text[position:])
        rules.append(_rule(match))
        position = match.end()
    keys = [rule.key for rule in rules]
    for rule in rules:
        if keys.count(rule.key) > 1:
            raise _fail("a rule given twice (same verb, URI, regex and unit)", str(rule))
    return tuple(rules)


def format_rate_limits(rules: Iterable[RateLimit]) -> str:
    """The setting's text for ``rules`` (``parse_rate_limits`` reads it back)."""
    return ";".join(str(rule) for rule in rules)
