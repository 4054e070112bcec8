"""Image representations (Ex 2.45–2.48, 1.50/1.51).

``tenant_id`` and ``user_id`` of the guide's image samples are left out: the reference
implementation never sent them and today's clients' schemas reject them (docs/compatibility.md).
"""

from __future__ import annotations

from typing import Any

from api_gateway.views.links import isotime, resource_links
from shared.db.records import Image

#: Image-service status -> (v2 status, progress), as the reference implementation mapped them.
_STATUS = {
    "active": ("ACTIVE", 100),
    "queued": ("SAVING", 25),
    "saving": ("SAVING", 50),
    "deleted": ("DELETED", 0),
    "pending_delete": ("DELETED", 0),
    "killed": ("ERROR", 0),
}

#: Image-service statuses with a v2 status of their own; any other shows as UNKNOWN.
KNOWN_SERVICE_STATUSES = frozenset(_STATUS)


def status_of(row: Image) -> tuple[str, int]:
    return _STATUS.get(row.status, ("UNKNOWN", 0))


def service_statuses(status: str) -> frozenset[str]:
    """The image-service statuses shown as the v2 ``status`` (the ``status`` list filter);
    empty for UNKNOWN and for anything that is not a v2 image status."""
    return frozenset(service for service, (v2, _) in _STATUS.items() if v2 == status)


def basic(row: Image, base: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "links": resource_links(base, tenant_id, "images", row.id),
    }


def detail(row: Image, base: str, tenant_id: str) -> dict[str, Any]:
    status, progress = status_of(row)
    if status == "SAVING" and row.progress:
        progress = row.progress
    image: dict[str, Any] = {
        "id": str(row.id),
        "name": row.name,
        "status": status,
        "progress": progress,
        "minDisk": row.min_disk_gb,
        "minRam": row.min_ram_mb,
        "created": isotime(row.created_at),
        "updated": isotime(row.updated_at),
        "metadata": row.metadata,
        "links": resource_links(base, tenant_id, "images", row.id),
    }
    if row.server_id is not None:
        image["server"] = {
            "id": str(row.server_id),
            "links": resource_links(base, tenant_id, "servers", row.server_id),
        }
    if status == "ERROR" and row.fault is not None:
        image["fault"] = _fault(row.fault)
    return image


def _fault(fault: dict[str, Any]) -> dict[str, Any]:
    """The asynchronous fault of an image in ERROR (guide 1.9.2): ``details`` only when
    there are some, ``created`` only when known."""
    shown = {"code": fault["code"], "message": fault["message"]}
    if fault.get("details"):
        shown["details"] = fault["details"]
    if fault.get("created"):
        shown["created"] = fault["created"]
    return shown
