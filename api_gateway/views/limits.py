"""The limits document (Ex 1.20/1.21, guide 1.6.3): rate limits grouped by URI, absolute limits.

``remaining`` and ``next-available`` are the calling user's, from the drained levels of their
buckets; ``absolute`` holds the quotas and, as nova's ``os-used-limits`` extension added, what
the project uses of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from api_gateway.views.links import isotime
from shared.db.quotas import Usage
from shared.rate_limits import RateLimit


def _limit(limit: RateLimit, level: float, now: datetime) -> dict[str, Any]:
    return {
        "value": limit.value,
        "verb": limit.verb,
        "remaining": limit.remaining(level),
        "unit": limit.unit,
        "next-available": isotime(now + timedelta(seconds=limit.delay(level))),
    }


def rate(
    limits: Sequence[RateLimit], levels: Mapping[str, float], now: datetime
) -> list[dict[str, Any]]:
    """One entry per (uri, regex), in the order the limits were configured, each listing its
    limits in that order."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for limit in limits:
        group = groups.setdefault(
            (limit.uri, limit.regex), {"uri": limit.uri, "regex": limit.regex, "limit": []}
        )
        group["limit"].append(_limit(limit, levels.get(limit.key, 0.0), now))
    return list(groups.values())


def absolute(used: Usage, quotas: Mapping[str, int]) -> dict[str, int]:
    """``quotas``: the project's (os-quota-sets: an administrator's overrides, else the
    settings), for every limit enforced, per project and per request alike."""
    return {
        "maxTotalRAMSize": quotas["ram"],
        "maxServerMeta": quotas["metadata_items"],
        "maxImageMeta": quotas["metadata_items"],
        "maxPersonality": quotas["injected_files"],
        "maxPersonalitySize": quotas["injected_file_content_bytes"],
        "maxTotalInstances": quotas["instances"],
        "maxTotalCores": quotas["cores"],
        "maxTotalKeypairs": quotas["key_pairs"],
        # security groups, floating IPs and server groups are not served: their limits are
        # nova's defaults and nothing is used of them, for clients (and tempest's schema)
        # that require the members (docs/compatibility.md)
        "maxSecurityGroups": 10,
        "maxSecurityGroupRules": 20,
        "maxTotalFloatingIps": 10,
        "maxServerGroups": 10,
        "maxServerGroupMembers": 10,
        "totalRAMUsed": used.ram_mb,
        "totalInstancesUsed": used.instances,
        "totalCoresUsed": used.cores,
        "totalSecurityGroupsUsed": 0,
        "totalFloatingIpsUsed": 0,
        "totalServerGroupsUsed": 0,
    }


def limits(rates: list[dict[str, Any]], absolute_limits: dict[str, int]) -> dict[str, Any]:
    return {"limits": {"rate": rates, "absolute": absolute_limits}}
