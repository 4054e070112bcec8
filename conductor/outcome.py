"""How a report ends the user's action it serves (its row in ``actions``)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.messages import CommandReport


@dataclass(frozen=True)
class Outcome:
    success: bool
    message: str | None = None

    @classmethod
    def of(cls, report: CommandReport) -> Outcome:
        """The report's own outcome."""
        return cls(report.success, report.fault.message if report.fault else None)
