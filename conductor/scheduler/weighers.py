"""Host weighers: SQL expressions, higher is better; the scheduler orders by their sum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.db.sql import Params


class HostWeigher(Protocol):
    def expression(self, params: Params) -> str: ...


@dataclass(frozen=True)
class FreeRamWeigher:
    """Prefer the host with the most free RAM, which spreads servers across hosts.

    A negative ``multiplier`` stacks them instead (fill one host before the next).
    """

    ram_ratio: float
    multiplier: float = 1.0

    def expression(self, params: Params) -> str:
        return (
            f"{params.add(self.multiplier)}::float8 * "
            f"(ram_mb * {params.add(self.ram_ratio)}::float8 - ram_mb_used)"
        )
