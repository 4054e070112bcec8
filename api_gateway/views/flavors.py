"""Flavor representations (Ex 2.41–2.44)."""

from __future__ import annotations

from typing import Any

from api_gateway.views.links import resource_links
from shared.db.records import Flavor


def basic(row: Flavor, base: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "links": resource_links(base, tenant_id, "flavors", row.id),
    }


def detail(row: Flavor, base: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "ram": row.ram_mb,
        "disk": row.disk_gb,
        "vcpus": row.vcpus,
        "links": resource_links(base, tenant_id, "flavors", row.id),
    }
