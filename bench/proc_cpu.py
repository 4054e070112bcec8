"""CPU seconds and memory of whole process trees, read from /proc.

The distributed benchmark charges each role (a ``stratus`` process, PostgreSQL, RabbitMQ)
with the CPU its processes used during a phase. A role is more than one process: PostgreSQL
runs a backend per connection below its postmaster, and RabbitMQ's Erlang VM runs below the
package's wrapper (``su``, ``sh``) in the node's process group. psutil reports one process at
a time and forgets the ones that ended, so the figures here come from ``/proc/<pid>/stat``
directly: a process's own time (utime + stime) plus the time of the children it has reaped
(cutime + cstime). Summed over the live members of a tree, that counts everything the tree
ever used, backends that came and went included (their time moved into the postmaster's
cutime when it reaped them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: clock ticks per second of the times in /proc/<pid>/stat
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")


@dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` this module needs (times in ticks)."""

    pid: int
    ppid: int
    pgrp: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def own_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def total_ticks(self) -> int:
        """Its own time and that of every child it has reaped (and theirs)."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> Stat:
    """One ``/proc/<pid>/stat`` line. The command name (field 2) is in parentheses and may
    hold spaces or parentheses itself, so the fields are counted from its last ``)``."""
    head, _, tail = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()
    # fields[0] is field 3 (state): field n is fields[n - 3]
    return Stat(
        pid=pid,
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def read_all(proc: Path = PROC) -> dict[int, Stat]:
    """Every process's stat now (processes that end while being read are left out)."""
    stats: dict[int, Stat] = {}
    for path in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = parse_stat(path.read_text())
            stats[stat.pid] = stat
    return stats


def tree(stats: Mapping[int, Stat], root: int) -> set[int]:
    """``root`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found = {root} if root in stats else set()
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in found:
                found.add(child)
                queue.append(child)
    return found


def group(stats: Mapping[int, Stat], pgrp: int) -> set[int]:
    """Every live process of process group ``pgrp``."""
    return {pid for pid, stat in stats.items() if stat.pgrp == pgrp}


def members(stats: Mapping[int, Stat], roots: Iterable[int], pgrps: Iterable[int] = ()) -> set[int]:
    """The trees below ``roots`` and the process groups ``pgrps``, together."""
    found: set[int] = set()
    for root in roots:
        found |= tree(stats, root)
    for pgrp in pgrps:
        found |= group(stats, pgrp)
    return found


def cpu_seconds(
    stats: Mapping[int, Stat], pids: Iterable[int], excluded: Iterable[int] = ()
) -> float:
    """CPU seconds the processes ``pids`` (and their reaped children) used so far, less the
    own time of ``excluded`` (processes among them that are not the role's work: the
    benchmark's own PostgreSQL sessions)."""
    total = sum(stats[pid].total_ticks for pid in pids if pid in stats)
    total -= sum(stats[pid].own_ticks for pid in excluded if pid in stats)
    return total / TICKS


def memory_kib(pid: int, field: str = "VmRSS", source: str = "status") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM) or ``smaps_rollup`` (Pss)."""
    try:
        text = (PROC / str(pid) / source).read_text()
    except OSError:
        return None
    return parse_kib(text, field)


def parse_kib(text: str, field: str) -> int | None:
    """The value of ``<field>: <n> kB`` in a /proc text, None when it is not there."""
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == field:
            with contextlib.suppress(ValueError, IndexError):
                return int(rest.split()[0])
    return None
