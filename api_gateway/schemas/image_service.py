"""Request bodies of the image service API's writes (Glance v2): a new image, and a JSON
Patch of one (``application/openstack-images-v2.1-json-patch``).

Glance's core attributes are typed and checked here; any other member is a property (a
string, as Glance's schema says: ``additionalProperties: {"type": "string"}``). Attributes
the service computes (``status``, ``size``, ``checksum``...) are read-only and refused with
403, as Glance answers; so are those it reserves.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api_gateway.http.faults import BadRequest, Forbidden
from api_gateway.schemas.common import Boolean, validate

#: Glance's disk and container formats (its ``disk_formats``, ``container_formats``)
DiskFormat = Literal[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"
]
ContainerFormat = Literal["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"]
DISK_FORMATS: tuple[str, ...] = get_args(DiskFormat)
CONTAINER_FORMATS: tuple[str, ...] = get_args(ContainerFormat)

#: computed by the service: a request may not set them (403 "is read-only")
READ_ONLY = frozenset(
    {
        "status",
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "owner",
        "created_at",
        "updated_at",
        "self",
        "file",
        "schema",
        "direct_url",
        "locations",
        "image_type",
        "instance_uuid",
        "os_hidden",
    }
)
#: reserved by Glance (403 "is reserved")
RESERVED = frozenset({"location", "deleted", "deleted_at"})

PropertyKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
PropertyValue = Annotated[str, StringConstraints(max_length=255)]
Name = Annotated[str, StringConstraints(max_length=255)]
Size = Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)]
Visibility = Literal["public", "private", "shared", "community"]


class ImageCore(BaseModel):
    """Glance's core attributes a request may set."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    disk_format: DiskFormat | None = None
    container_format: ContainerFormat | None = None
    visibility: Visibility = "private"
    protected: Boolean = False
    min_disk: Size = 0
    min_ram: Size = 0
    tags: list[str] = []


#: the core attributes a create or a patch may set
CORE = frozenset(ImageCore.model_fields) | {"id"}


class _Property(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: PropertyKey
    value: PropertyValue


def check_writable(name: str) -> None:
    """403 for an attribute no request may set, in Glance's words."""
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if name in RESERVED:
        raise Forbidden(f"Attribute '{name}' is reserved.")


def property_item(key: str, value: Any) -> tuple[str, str]:
    """A property (any non-core member): a string of at most 255 characters under a key of
    at most 255; anything else is 400."""
    if not isinstance(value, str):
        raise BadRequest(f"Invalid value for property '{key}': it must be a string.")
    item = validate(_Property, {"key": key, "value": value})
    return item.key, item.value


@dataclass(frozen=True)
class NewImageRequest:
    """A create request: the core attributes, the id asked for (if any), the properties."""

    core: ImageCore
    id: uuid.UUID | None
    properties: dict[str, str]


def new_image(body: Any) -> NewImageRequest:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object describing the image.")
    core: dict[str, Any] = {}
    properties: dict[str, str] = {}
    for key, value in body.items():
        check_writable(key)
        if key in CORE:
            core[key] = value
        else:
            name, text = property_item(key, value)
            properties[name] = text
    image_id = _image_id(core.pop("id", None))
    return NewImageRequest(validate(ImageCore, core), image_id, properties)


def _image_id(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadRequest(f"Invalid image id: {value!r}") from None


@dataclass(frozen=True)
class PatchOp:
    """One operation of a JSON Patch: ``op`` on the attribute or property ``name``."""

    op: str
    name: str
    value: Any = None


#: the media types of Glance's JSON Patch bodies
PATCH_MEDIA_TYPES = (
    "application/openstack-images-v2.1-json-patch",
    "application/openstack-images-v2.0-json-patch",
)


def patch(body: Any) -> list[PatchOp]:
    """The operations of a JSON Patch, each on a top-level member (``/name``); 400 for
    anything else Glance would refuse, 403 for read-only attributes."""
    if not isinstance(body, list):
        raise BadRequest("The request body must be a JSON array of patch operations.")
    return [_operation(item) for item in body]


def _operation(item: Any) -> PatchOp:
    if not isinstance(item, dict) or item.get("op") not in ("add", "replace", "remove"):
        raise BadRequest(f"Unable to find a valid 'op' in {item!r}: add, replace or remove.")
    op, path = item["op"], item.get("path")
    if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1:
        raise BadRequest(f"Invalid JSON pointer for this resource: {path!r}")
    name = path[1:].replace("~1", "/").replace("~0", "~")
    check_writable(name)
    if op != "remove" and "value" not in item:
        raise BadRequest(f"Operation '{op}' of '{path}' needs a 'value'.")
    if name == "id":
        raise Forbidden("Attribute 'id' is read-only.")
    return PatchOp(op, name, item.get("value"))
