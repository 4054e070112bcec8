"""Request bodies of the server resource (Table 2.1)."""

from __future__ import annotations

import base64
import binascii
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
MetaValue = Annotated[str, StringConstraints(max_length=255)]


def ref_id(value: object) -> object:
    """An image or flavor reference may be an id or a URL whose last segment is the id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and "/" in value:
        return urlparse(value).path.rstrip("/").rsplit("/", 1)[-1]
    return value


Ref = Annotated[str, BeforeValidator(ref_id), StringConstraints(min_length=1, max_length=255)]


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


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


class ServerCreate(BaseModel):
    """The ``server`` object of a create request.

    Attributes of extensions Stratus does not offer (``key_name``, ``networks``, ...) are
    ignored, as the reference implementation ignored what no loaded extension claimed.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: Name
    image_ref: Ref = Field(alias="imageRef")
    flavor_ref: Ref = Field(alias="flavorRef")
    metadata: dict[MetaKey, MetaValue] = {}
    personality: list[PersonalityFile] = []
    admin_pass: str | None = Field(default=None, alias="adminPass")
    access_ipv4: Annotated[IPv4Address | None, BeforeValidator(_empty_is_none)] = Field(
        default=None, alias="accessIPv4"
    )
    access_ipv6: Annotated[IPv6Address | None, BeforeValidator(_empty_is_none)] = Field(
        default=None, alias="accessIPv6"
    )


class CreateServerBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    server: ServerCreate
