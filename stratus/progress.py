"""Progress of the operator's long commands, on stderr so that stdout keeps only the result.

On a terminal one line is rewritten in place (at most every ``interval_s``); anywhere else (a
log file, CI, ``docker compose run`` without a TTY) a line is written at every ``step_percent``,
so that a log shows the command moving without a line per chunk.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _size(count: int) -> str:
    """``count`` bytes for a person: 512 B, 3.4 MiB, 1.2 GiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class CopyProgress:
    """Reports copies: call it with (what, bytes done, bytes in all) as each copy goes on."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        step_percent: int = 10,
        interval_s: float = 0.1,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.step_percent = step_percent
        self.interval_s = interval_s
        self._tty = self.stream.isatty()
        self._last_step: dict[str, int] = {}
        self._last_draw = 0.0

    def __call__(self, what: str, done: int, total: int) -> None:
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        line = f"copying {what}: {percent:3d}% ({_size(done)} of {_size(total)})"
        if self._tty:
            self._draw(line, finished=done >= total)
        else:
            self._log(what, line, percent)

    def _draw(self, line: str, *, finished: bool) -> None:
        now = time.monotonic()
        if not finished and now - self._last_draw < self.interval_s:
            return
        self._last_draw = now
        self.stream.write("\r\x1b[K" + line + ("\n" if finished else ""))
        self.stream.flush()

    def _log(self, what: str, line: str, percent: int) -> None:
        step = percent // self.step_percent
        if self._last_step.get(what, -1) >= step:
            return
        self._last_step[what] = step
        print(line, file=self.stream, flush=True)
