"""How a report ends the user's action it serves (its row in ``actions``)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.messages import CommandReport


@dataclass(frozen=True)
class Outcome:
    success: bool
    message: str | None = None
    #: the report's own statement closed the action already (a task of one step done:
    #: ``servers.complete_task``), so nothing is left to close
    closed: bool = False

    @classmethod
    def of(cls, report: CommandReport) -> Outcome:
        """The report's own outcome."""
        return cls(report.success, report.fault.message if report.fault else None)
