"""Image representations (Ex 2.45–2.48).

``tenant_id`` and ``user_id`` of the guide's image samples are left out: the reference
implementation never sent them and today's clients' schemas reject them (docs/compatibility.md).
"""

from __future__ import annotations

from typing import Any

from api_gateway.views.links import isotime, resource_links

#: Image-service status -> (v2 status, progress), as the reference implementation mapped them.
_STATUS = {
    "active": ("ACTIVE", 100),
    "queued": ("SAVING", 25),
    "saving": ("SAVING", 50),
    "deleted": ("DELETED", 0),
    "pending_delete": ("DELETED", 0),
    "killed": ("ERROR", 0),
}


def status_of(row: Any) -> tuple[str, int]:
    return _STATUS.get(row["status"], ("UNKNOWN", 0))


def basic(row: Any, base: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "links": resource_links(base, tenant_id, "images", row["id"]),
    }


def detail(row: Any, base: str, tenant_id: str) -> dict[str, Any]:
    status, progress = status_of(row)
    if status == "SAVING" and row["progress"]:
        progress = row["progress"]
    image: dict[str, Any] = {
        "id": str(row["id"]),
        "name": row["name"],
        "status": status,
        "progress": progress,
        "minDisk": row["min_disk_gb"],
        "minRam": row["min_ram_mb"],
        "created": isotime(row["created_at"]),
        "updated": isotime(row["updated_at"]),
        "metadata": row["metadata"],
        "links": resource_links(base, tenant_id, "images", row["id"]),
    }
    if row["server_id"] is not None:
        image["server"] = {
            "id": str(row["server_id"]),
            "links": resource_links(base, tenant_id, "servers", row["server_id"]),
        }
    return image
