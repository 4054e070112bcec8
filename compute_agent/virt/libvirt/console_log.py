"""A server's serial console log on its host (``InstanceFiles.console``): QEMU appends all
its guest prints there (domain_xml.py ``_console``); on libvirt's test hypervisor, whose
guests print nothing, the driver appends what a booting guest would (fake_guest.py).

Both run in a worker thread: a log is a file on the host's disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from compute_agent.virt.driver import MAX_CONSOLE_BYTES, console_text


def read_end(path: Path) -> str:
    """The last ``MAX_CONSOLE_BYTES`` of the log, as text; a guest that printed nothing yet
    (no file) has an empty log."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - MAX_CONSOLE_BYTES))
            return console_text(log.read(MAX_CONSOLE_BYTES))
    except FileNotFoundError:
        return ""


def append(path: Path, lines: list[str]) -> None:
    """Print ``lines`` on the console, as a serial terminal ends them (CR LF)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as log:
        log.write("".join(f"{line}\r\n" for line in lines).encode())
