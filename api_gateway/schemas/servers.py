"""Request bodies of the server resource (Table 2.1)."""

from __future__ import annotations

import base64
import binascii
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api_gateway.schemas.common import Boolean


def _at_most_255_as_given(value: object) -> object:
    """A name is measured as sent, before its surrounding blanks are stripped (as nova did):
    255 characters and a trailing newline is too long, not a name of 255."""
    if isinstance(value, str) and len(value) > 255:
        raise ValueError("String should have at most 255 characters")
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    BeforeValidator(_at_most_255_as_given),
]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
MetaValue = Annotated[str, StringConstraints(max_length=255)]


#: The longest reference taken; a longer one is refused whole rather than cut to its last
#: segment (no id or URL of ours is anywhere near that long).
_MAX_REF = 255


def ref_id(value: object) -> object:
    """An image or flavor reference may be an id or a URL whose last segment is the id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and "/" in value and len(value) <= _MAX_REF:
        return urlparse(value).path.rstrip("/").rsplit("/", 1)[-1]
    return value


Ref = Annotated[str, BeforeValidator(ref_id), StringConstraints(min_length=1, max_length=_MAX_REF)]


def _access_address(value: object, family: type[IPv4Address | IPv6Address]) -> str | None:
    """An access address: a string holding an address of ``family``, kept in its canonical
    (for IPv6 compressed) form, as nova answered it (``0000:...:babe:220.12.22.2`` is
    ``::babe:dc0c:1602``); null or "" means none. A number or a boolean is refused, though
    ``ipaddress`` would take one."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("an IP address must be a string")
    # raises ValueError (AddressValueError) for anything else
    return str(family(value.strip()))


def _access_ipv4(value: object) -> str | None:
    return _access_address(value, IPv4Address)


def _access_ipv6(value: object) -> str | None:
    return _access_address(value, IPv6Address)


AccessIPv4 = Annotated[str | None, BeforeValidator(_access_ipv4)]
AccessIPv6 = Annotated[str | None, BeforeValidator(_access_ipv6)]


#: The most servers one create request may ask for: quotas bound a project, but an unlimited
#: quota must not let one request insert a million rows in one transaction.
MAX_COUNT = 1000


def _count(value: object) -> object:
    """A server count: an integer, or its decimal text (XML attributes are text, and nova's
    own multiple-create sample sends ``"2"`` in JSON). Booleans and fractions are refused."""
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


Count = Annotated[int, BeforeValidator(_count), Field(strict=True, ge=1, le=MAX_COUNT)]


class PersonalityFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    contents: str

    @field_validator("contents")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("Personality content could not be base64-decoded") from None
        return value


#: the most user data a create may carry, base64-encoded (nova's MAX_USERDATA_SIZE)
MAX_USER_DATA = 65535


def _user_data(value: object) -> object:
    """os-user-data's ``user_data``: base64 text of at most 64 KiB (whitespace, which XML
    bodies wrap it in, is dropped), with nova's messages for what is not."""
    if value is None or not isinstance(value, str):
        return value
    text = "".join(value.split())
    if len(text) > MAX_USER_DATA:
        raise ValueError(
            f"User data too large. User data must be no larger than {MAX_USER_DATA} bytes "
            f"once base64 encoded. Your data is {len(text)} bytes"
        )
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Userdata content cannot be decoded") from None
    return text


UserData = Annotated[str, BeforeValidator(_user_data)]


class ServerCreate(BaseModel):
    """The ``server`` object of a create request.

    A member neither the guide nor an extension today's clients use defines is 400, naming
    it (nova v2.1's rule): a misspelt ``metdata`` must not create a server without metadata.
    The extension members novaclient and openstacksdk send are taken; those Stratus does not
    act on (below, typed ``Any``) are listed in docs/compatibility.md.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name
    image_ref: Ref = Field(alias="imageRef")
    flavor_ref: Ref = Field(alias="flavorRef")
    metadata: dict[MetaKey, MetaValue] = {}
    personality: list[PersonalityFile] = []
    admin_pass: str | None = Field(default=None, alias="adminPass")
    access_ipv4: AccessIPv4 = Field(default=None, alias="accessIPv4")
    access_ipv6: AccessIPv6 = Field(default=None, alias="accessIPv6")
    # os-multiple-create: at least min_count servers, as many as max_count if the quota
    # allows (api_gateway/compute/api.py); integers or their text (XML, and nova's sample)
    min_count: Count = 1
    max_count: Count | None = None
    return_reservation_id: Boolean = False
    # the os-keypairs extension's member: one of the caller's key pairs (None: no key); any
    # other value, a name the caller has no key pair of included, is 400 "Invalid key_name
    # provided." (nova's message), decided by the compute layer
    key_name: Any = None
    # os-user-data and os-config-drive: delivered into the guest on its config drive
    # (compute_agent/config_drive.py), which is built whenever there is something to
    # deliver, and always when ``config_drive`` is true
    user_data: UserData | None = None
    config_drive: Boolean | None = None
    # extension members clients send that Stratus accepts without acting on them
    # (docs/compatibility.md): os-availability-zone, os-security-groups, os-networks,
    # os-volumes' block device mappings, OS-DCF
    availability_zone: Any = None
    security_groups: Any = None
    networks: Any = None
    block_device_mapping: Any = None
    block_device_mapping_v2: Any = None
    disk_config: Any = Field(default=None, alias="OS-DCF:diskConfig")

    @model_validator(mode="after")
    def _counts_in_order(self) -> ServerCreate:
        """``max_count`` defaults to ``min_count`` (nova's rule), and may not be below it."""
        if self.max_count is None:
            self.max_count = self.min_count
        if self.min_count > self.max_count:
            raise ValueError("min_count must be <= max_count")
        return self

    @property
    def count_range(self) -> tuple[int, int]:
        """(fewest, most) servers the request asks for."""
        return self.min_count, self.max_count or self.min_count


class CreateServerBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    server: ServerCreate


#: Members of a server that exist but may not be changed by Update Server.
_NOT_UPDATABLE = ("hostId", "personality")


class ServerUpdate(BaseModel):
    """The ``server`` object of an update (Table 2.2): at least one of ``name``,
    ``accessIPv4``, ``accessIPv6``. ``null`` or ``""`` clears an access address; a name
    cannot be cleared. ``OS-DCF:diskConfig`` is taken and not acted on; any other member
    (``metadata`` included) is 400 naming it, as nova v2.1 answered."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name | None = None
    access_ipv4: AccessIPv4 = Field(default=None, alias="accessIPv4")
    access_ipv6: AccessIPv6 = Field(default=None, alias="accessIPv6")
    disk_config: Any = Field(default=None, alias="OS-DCF:diskConfig")

    @model_validator(mode="before")
    @classmethod
    def _only_updatable(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for member in _NOT_UPDATABLE:
                if member in data:
                    raise ValueError(f"{member} cannot be updated")
        return data

    @model_validator(mode="after")
    def _something_to_change(self) -> ServerUpdate:
        if not self.model_fields_set - {"disk_config"}:
            raise ValueError("give at least one of name, accessIPv4 and accessIPv6")
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        return self

    def changes(self) -> dict[str, str]:
        """The columns to set (an access address cleared is the empty string)."""
        columns = {
            "name": self.name,
            "access_ipv4": self.access_ipv4,
            "access_ipv6": self.access_ipv6,
        }
        return {
            column: "" if value is None else value
            for column, value in columns.items()
            if column in self.model_fields_set
        }


class UpdateServerBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    server: ServerUpdate
