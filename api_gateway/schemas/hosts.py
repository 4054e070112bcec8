"""Request body of ``PUT /os-hosts/{host}`` (nova's os-hosts)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class HostUpdate(BaseModel):
    """``status`` lets the scheduler use the host or not; ``maintenance_mode`` is a request
    Stratus has no way to carry out (answered 501)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["enable", "disable"] | None = None
    maintenance_mode: Literal["enable", "disable"] | None = None
