"""A host's disk that fills up while the agent writes a server's files (issue 17).

Whatever writes on a host (the image cache's downloads into ``_base``, qemu-img making a
root disk, the config drive) may run out of space. Left as it comes, that is an ``OSError``
no handler expects (the command would be retried until it is dead-lettered, the server stuck
in its task until the reaper gives up on it) or a qemu-img complaint that buries the cause.
Each writer instead turns it into ``DiskFull``, a ``DriverError`` naming the directory that
is full and the host: the action fails with a fault an operator can act on at once, and the
driver removes what the build had made.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compute_agent.virt.driver import DriverError

#: the errors of a file system with no room left (for anyone, or for this user)
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

#: how programs that report an errno as text (qemu-img, libvirt, QEMU) say it
NO_SPACE_MESSAGES = tuple(os.strerror(code) for code in sorted(NO_SPACE_ERRNOS))


class DiskFull(DriverError):
    """There was not enough room in ``directory`` (on ``host``, where known) for what was
    being written; ``detail`` is how the system said it."""

    def __init__(self, directory: Path, detail: str, host: str | None = None) -> None:
        self.directory = directory
        self.detail = detail
        self.host = host
        where = f"{directory} on host {host}" if host else str(directory)
        super().__init__(f"not enough disk space in {where}: {detail}")

    def on_host(self, host: str | None) -> DiskFull:
        """The same, naming ``host`` (what raised it may not know which host it is on)."""
        if self.host is not None or host is None:
            return self
        return DiskFull(self.directory, self.detail, host)


def no_space_detail(exc: BaseException) -> str | None:
    """How ``exc`` says the disk is full (``No space left on device``...), or None when
    it is about something else. An ``OSError`` says it by its errno; a program's complaint
    (a ``DriverError`` of qemu-img, a libvirt error) only in its text."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno) if exc.errno in NO_SPACE_ERRNOS else None
    text = str(exc)
    return next((message for message in NO_SPACE_MESSAGES if message in text), None)


@contextmanager
def writing(directory: Path, host: str | None = None) -> Iterator[None]:
    """Running out of space in the block is ``DiskFull`` naming ``directory``; a
    ``DiskFull`` about another directory (a download into ``_base`` while a root disk is
    being made) keeps naming that one (given ``host``, if it did not say which host), and
    every other error passes unchanged."""
    try:
        yield
    except DiskFull as exc:
        named = exc.on_host(host)
        if named is exc:
            raise
        raise named from exc
    except (OSError, DriverError) as exc:
        detail = no_space_detail(exc)
        if detail is None:
            raise
        raise DiskFull(directory, detail, host) from exc
