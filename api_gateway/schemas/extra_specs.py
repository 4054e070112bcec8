"""Request bodies of flavor extra specs (nova's os-flavor-extra-specs)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints


def _text(value: object) -> object:
    """A value may be sent as a number (``"hw:numa_nodes": 2``); it is kept as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


SpecKey = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\w.:\- ]+$")]
SpecValue = Annotated[str, BeforeValidator(_text), StringConstraints(max_length=255)]


class ExtraSpecsBody(BaseModel):
    """``POST /flavors/{id}/os-extra_specs``: keys to set (others are kept)."""

    model_config = ConfigDict(extra="forbid")

    extra_specs: dict[SpecKey, SpecValue]


class ExtraSpecItem(BaseModel):
    """``PUT /flavors/{id}/os-extra_specs/{key}``: exactly that one key."""

    model_config = ConfigDict(extra="forbid")

    item: dict[SpecKey, SpecValue]
