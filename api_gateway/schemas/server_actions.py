"""Request bodies of the server actions (Tables 2.4–2.8): the value under the action's key.

XML bodies arrive in the same shape (``http/xml_body.py``): attributes are members,
``<metadata>`` an object, ``<personality>`` a list, an empty element ``null``. A member
neither the guide nor nova's v2.1 schema of the action defines is 400 naming it, as nova v2.1
answered (``OS-DCF:diskConfig`` and rebuild's ``preserve_ephemeral`` are taken and not acted
on; docs/compatibility.md).
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api_gateway.schemas.common import validate
from api_gateway.schemas.servers import MetaKey, MetaValue, Name, PersonalityFile, Ref


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ChangePassword(_Action):
    """Table 2.4."""

    admin_pass: str = Field(alias="adminPass")


class RebootType(StrEnum):
    SOFT = "SOFT"
    HARD = "HARD"


class Reboot(_Action):
    """Table 2.5: ``type`` is compared case-insensitively; absent means SOFT (the guide's
    rule; the XSD and the reference implementation required it)."""

    type: Annotated[RebootType, BeforeValidator(_upper)] = RebootType.SOFT


class Rebuild(_Action):
    """Table 2.6. Only ``imageRef`` is required (the XSD's rule, a superset of the guide's);
    members given replace the server's, members absent keep them; an empty access address
    clears it."""

    image_ref: Ref = Field(alias="imageRef")
    name: Name | None = None
    metadata: dict[MetaKey, MetaValue] | None = None
    personality: list[PersonalityFile] = []
    admin_pass: str | None = Field(default=None, alias="adminPass")
    access_ipv4: Annotated[IPv4Address | None, BeforeValidator(_empty_is_none)] = Field(
        default=None, alias="accessIPv4"
    )
    access_ipv6: Annotated[IPv6Address | None, BeforeValidator(_empty_is_none)] = Field(
        default=None, alias="accessIPv6"
    )
    disk_config: Any = Field(default=None, alias="OS-DCF:diskConfig")
    preserve_ephemeral: Any = None

    def access_changes(self) -> dict[str, str]:
        """The access-address columns the rebuild sets (given ones; cleared = empty)."""
        return {
            column: str(getattr(self, column) or "")
            for column in ("access_ipv4", "access_ipv6")
            if column in self.model_fields_set
        }


class Resize(_Action):
    """Table 2.7: only ``flavorRef`` (the samples', the XSD's), and ``OS-DCF:diskConfig``."""

    flavor_ref: Ref = Field(alias="flavorRef")
    disk_config: Any = Field(default=None, alias="OS-DCF:diskConfig")


class CreateImage(_Action):
    """Table 2.8."""

    name: Name
    metadata: dict[MetaKey, MetaValue] = {}


def members(value: Any) -> Any:
    """An action's value as members: ``null`` (``{"reboot": null}``, ``<reboot/>``) has none."""
    return {} if value is None else value


def reboot(value: Any) -> Reboot:
    """``reboot``'s value, ``null`` or members (guide 2.3.2)."""
    return validate(Reboot, members(value))


class _NoMembers(_Action):
    """The value of an action without parameters, when it is an object: an empty one."""


def no_arguments(value: Any) -> None:
    """The schema of an action without parameters (pause, lock, confirmResize...): ``null``,
    ``<pause/>``, ``{}`` or any value that is not an object are alike, as nova's v2.1 schemas
    take any value there. An object with members is 400 naming the first: a member means
    something (a lock's ``locked_reason``, microversion 2.73) that would silently not happen."""
    if isinstance(value, dict):
        validate(_NoMembers, value)
