"""Images as the image service (Glance v2) shows them, for clients that resolve an image
through the catalog's ``image`` endpoint (``nova boot --image``, ``openstack server create
--image``, ``openstack server image create``).

The same rows as the compute API's images (api_gateway/views/images.py), in Glance's shape:
lower-case statuses, ``visibility``, sizes in bytes, metadata as top-level properties, and
relative ``self``/``file``/``schema`` references.
"""

from __future__ import annotations

from typing import Any

from api_gateway.schemas.image_service import CONTAINER_FORMATS, DISK_FORMATS
from api_gateway.views.links import isotime
from shared.db.records import Image, ImageSharing

#: Glance's own members: metadata keys with these names are not shown over them.
_CORE = frozenset(
    {
        "id",
        "name",
        "status",
        "visibility",
        "protected",
        "os_hidden",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "owner",
        "size",
        "virtual_size",
        "min_ram",
        "min_disk",
        "disk_format",
        "container_format",
        "created_at",
        "updated_at",
        "tags",
        "self",
        "file",
        "schema",
        "locations",
        "direct_url",
        "image_type",
        "instance_uuid",
    }
)


def versions(base: str) -> dict[str, Any]:
    """The discovery document of ``GET /image/``: the one API version served."""
    return {
        "versions": [
            {
                "id": "v2.0",
                "status": "CURRENT",
                "links": [{"rel": "self", "href": f"{base}/image/v2/"}],
            }
        ]
    }


def image(row: Image, sharing: ImageSharing) -> dict[str, Any]:
    """One image; ``sharing`` holds what only the image service shows (visibility, size,
    formats, hashes)."""
    image_id = str(row.id)
    shown: dict[str, Any] = {key: value for key, value in row.metadata.items() if key not in _CORE}
    shown.update(
        {
            "id": image_id,
            "name": row.name,
            "status": row.status,
            "visibility": "public" if sharing.is_public else "private",
            "protected": sharing.protected,
            "os_hidden": False,
            "checksum": sharing.checksum,
            "os_hash_algo": sharing.os_hash_algo,
            "os_hash_value": sharing.os_hash_value,
            "owner": row.owner,
            "size": sharing.size_bytes,
            "virtual_size": None,
            "min_ram": row.min_ram_mb,
            "min_disk": row.min_disk_gb,
            "disk_format": row.disk_format,
            "container_format": sharing.container_format,
            "created_at": isotime(row.created_at),
            "updated_at": isotime(row.updated_at),
            "tags": [],
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    if row.server_id is not None:  # as nova records a snapshot's origin
        shown["image_type"] = row.image_type
        shown["instance_uuid"] = str(row.server_id)
    return shown


def page(images: list[dict[str, Any]], next_query: str | None) -> dict[str, Any]:
    """A list page; ``next`` is the query of the page that follows, when one does."""
    body: dict[str, Any] = {
        "images": images,
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    }
    if next_query is not None:
        body["next"] = f"/v2/images?{next_query}"
    return body


_UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


def image_schema() -> dict[str, Any]:
    """``GET /image/v2/schemas/image``: Glance's image schema, for the attributes served (a
    client validates images and builds patches with it)."""
    properties: dict[str, Any] = {
        "id": {"type": "string", "pattern": _UUID},
        "name": _nullable("string", maxLength=255),
        "status": {
            "type": "string",
            "readOnly": True,
            "enum": ["queued", "saving", "active", "killed", "deleted"],
        },
        "visibility": {"type": "string", "enum": ["public", "private"]},
        "protected": {"type": "boolean"},
        "os_hidden": {"type": "boolean", "readOnly": True},
        "checksum": _nullable("string", readOnly=True, maxLength=32),
        "os_hash_algo": _nullable("string", readOnly=True, maxLength=64),
        "os_hash_value": _nullable("string", readOnly=True, maxLength=128),
        "owner": _nullable("string", readOnly=True, maxLength=255),
        "size": _nullable("integer", readOnly=True),
        "virtual_size": _nullable("integer", readOnly=True),
        "container_format": {"enum": [None, *CONTAINER_FORMATS]},
        "disk_format": {"enum": [None, *DISK_FORMATS]},
        "created_at": {"type": "string", "readOnly": True},
        "updated_at": {"type": "string", "readOnly": True},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
        "min_ram": {"type": "integer"},
        "min_disk": {"type": "integer"},
        "self": {"type": "string", "readOnly": True},
        "file": {"type": "string", "readOnly": True},
        "schema": {"type": "string", "readOnly": True},
        "image_type": {"type": "string"},
        "instance_uuid": {"type": "string"},
    }
    return {
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> dict[str, Any]:
    """``GET /image/v2/schemas/images``: a page of images."""
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }
