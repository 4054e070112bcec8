"""A CPU quota per process, with the kernel's control groups: for benchmarks that make one
role the bottleneck on purpose (bench/distributed.py --conductor-cpu).

Each limited process gets a cgroup of its own below one the benchmark creates
(``stratus-bench-<pid>``), with a CFS bandwidth limit of ``fraction`` of one core: cgroup v2's
``cpu.max`` = ``"<fraction * 100000> 100000"`` where the ``cpu`` controller is on the unified
hierarchy, else cgroup v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (a hybrid setup, whose
``cpu`` controller is bound to a v1 mount and cannot be enabled on the unified one). Where
neither can be written (a container whose /sys/fs/cgroup is read-only, no ``cpu``
controller), ``CpuLimiter.create`` raises ``CgroupError`` saying why. ``close`` moves whatever
is left in the groups back to the hierarchy's root and removes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: the CFS period, µs: the quota is a share of it
PERIOD_US = 100_000
#: the kernel's smallest quota, µs (both versions refuse less)
MIN_QUOTA_US = 1_000


class CgroupError(Exception):
    """This machine's control groups cannot limit a process's CPU here, and why."""


# --- pure (tests/unit/test_bench_distributed.py) -------------------------------------------


def quota_us(fraction: float, period_us: int = PERIOD_US) -> int:
    """The quota of ``fraction`` of one core per period, µs (0.15 -> 15000)."""
    quota = round(fraction * period_us)
    if quota < MIN_QUOTA_US:
        raise ValueError(f"{fraction} of a core is below the kernel's 1 ms per period")
    return quota


def cpu_max(fraction: float, period_us: int = PERIOD_US) -> str:
    """cgroup v2's ``cpu.max`` for ``fraction`` of one core: ``"15000 100000"``."""
    return f"{quota_us(fraction, period_us)} {period_us}"


@dataclass(frozen=True)
class Hierarchy:
    """Where the ``cpu`` controller can be used: a cgroup2 mount (``version`` 2) or the v1
    mount the controller is bound to (``version`` 1)."""

    version: int
    mount: Path


def cpu_hierarchies(mounts: str) -> list[Hierarchy]:
    """The candidate hierarchies of a ``/proc/mounts`` text, v2 first: every cgroup2 mount
    (whether it has the ``cpu`` controller is for its cgroup.controllers to say) and every
    v1 mount whose options name ``cpu`` (alone or as ``cpu,cpuacct``)."""
    v2, v1 = [], []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        where, fstype, options = Path(fields[1]), fields[2], fields[3].split(",")
        if fstype == "cgroup2":
            v2.append(Hierarchy(2, where))
        elif fstype == "cgroup" and "cpu" in options:
            v1.append(Hierarchy(1, where))
    return v2 + v1


def parse_cpu_stat(text: str) -> dict[str, int]:
    """A ``cpu.stat`` file: ``key value`` lines."""
    stat = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stat[key] = int(value)
    return stat


@dataclass(frozen=True)
class Throttling:
    """CFS periods in which a group ran, those in which it hit its quota, and the time it
    spent waiting for the next period (both versions' counters, in one unit)."""

    periods: int = 0
    throttled: int = 0
    throttled_s: float = 0.0

    @classmethod
    def of(cls, stat: Mapping[str, int]) -> Throttling:
        # v2 counts throttled_usec, v1 throttled_time in ns
        waited = stat.get("throttled_usec", 0) / 1e6 + stat.get("throttled_time", 0) / 1e9
        return cls(stat.get("nr_periods", 0), stat.get("nr_throttled", 0), waited)

    def __add__(self, other: Throttling) -> Throttling:
        return Throttling(
            self.periods + other.periods,
            self.throttled + other.throttled,
            self.throttled_s + other.throttled_s,
        )

    def __sub__(self, other: Throttling) -> Throttling:
        return Throttling(
            self.periods - other.periods,
            self.throttled - other.throttled,
            self.throttled_s - other.throttled_s,
        )

    @property
    def share(self) -> float:
        """Of the periods the group ran in, the share that ended with it out of quota."""
        return self.throttled / self.periods if self.periods else 0.0


# --- the machine's cgroups ----------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    with path.open("w") as out:
        out.write(text)


class CpuLimiter:
    """Groups of ``fraction`` of one core each, below one of the benchmark's own."""

    def __init__(self, hierarchy: Hierarchy, fraction: float, name: str) -> None:
        self.hierarchy = hierarchy
        self.fraction = fraction
        self.parent = hierarchy.mount / name
        self.groups: dict[str, Path] = {}

    @classmethod
    def create(
        cls, fraction: float, mounts: str | None = None, name: str | None = None
    ) -> CpuLimiter:
        """The first hierarchy on which a group with a CPU quota can be made, its parent
        group made; ``CgroupError`` with every hierarchy's reason when none can."""
        quota_us(fraction)  # a fraction the kernel takes, before touching anything
        if mounts is None:
            mounts = Path("/proc/mounts").read_text()
        name = name or f"stratus-bench-{os.getpid()}"
        reasons = []
        for hierarchy in cpu_hierarchies(mounts):
            limiter = cls(hierarchy, fraction, name)
            try:
                limiter._prepare()
            except OSError as error:
                limiter.close()
                reasons.append(f"cgroup v{hierarchy.version} at {hierarchy.mount}: {error}")
                continue
            return limiter
        if not reasons:
            reasons.append("no cgroup2 mount and no cgroup v1 mount with the cpu controller")
        raise CgroupError(
            "cannot give a process a CPU quota on this machine (root, and a writable cgroup "
            "hierarchy with the cpu controller, are needed): " + "; ".join(reasons)
        )

    def _prepare(self) -> None:
        mount = self.hierarchy.mount
        if self.hierarchy.version == 2:
            controllers = (mount / "cgroup.controllers").read_text().split()
            if "cpu" not in controllers:
                raise OSError(
                    f"the cpu controller is not available here (controllers: "
                    f"{' '.join(controllers) or 'none'}; bound to a v1 hierarchy?)"
                )
            if "cpu" not in (mount / "cgroup.subtree_control").read_text().split():
                _write(mount / "cgroup.subtree_control", "+cpu")
            self.parent.mkdir()
            _write(self.parent / "cgroup.subtree_control", "+cpu")
        else:
            self.parent.mkdir()
        # a group with a quota, made and removed at once: the limit works here
        self._group("probe")
        self._remove(self.groups.pop("probe"))

    def _group(self, name: str) -> Path:
        group = self.parent / name
        group.mkdir()
        self.groups[name] = group
        if self.hierarchy.version == 2:
            _write(group / "cpu.max", cpu_max(self.fraction))
        else:
            _write(group / "cpu.cfs_period_us", str(PERIOD_US))
            _write(group / "cpu.cfs_quota_us", str(quota_us(self.fraction)))
        return group

    def limit(self, name: str, pid: int) -> None:
        """``pid`` (all its threads, and the children it starts from now on) in a group of
        its own named ``name``, held to ``fraction`` of one core."""
        group = self.groups.get(name) or self._group(name)
        _write(group / "cgroup.procs", str(pid))

    def throttling(self, names: Iterable[str] | None = None) -> Throttling:
        """The named groups' (all, without names) throttling counters, summed."""
        total = Throttling()
        for name in self.groups if names is None else names:
            group = self.groups.get(name)
            if group is None:
                continue
            try:
                total += Throttling.of(parse_cpu_stat((group / "cpu.stat").read_text()))
            except OSError:
                continue
        return total

    def release(self, names: Iterable[str]) -> list[str]:
        """The named groups removed, any process still in them moved to the root first;
        what could not be removed, and why."""
        problems = []
        for name in list(names):
            group = self.groups.pop(name, None)
            if group is None:
                continue
            try:
                self._remove(group)
            except OSError as error:
                problems.append(f"{group}: {error}")
        return problems

    def _remove(self, group: Path) -> None:
        root, procs = self.hierarchy.mount / "cgroup.procs", group / "cgroup.procs"
        for pid in procs.read_text().split() if procs.exists() else []:
            try:
                _write(root, pid)
            except ProcessLookupError:
                continue  # it ended meanwhile
        group.rmdir()

    def close(self) -> list[str]:
        """Every group and the parent removed; what could not be, and why."""
        problems = self.release(list(self.groups))
        try:
            if self.parent.exists():
                self.parent.rmdir()
        except OSError as error:
            problems.append(f"{self.parent}: {error}")
        return problems

    def describe(self) -> str:
        limit = (
            f"cpu.max {cpu_max(self.fraction)!r}"
            if self.hierarchy.version == 2
            else f"cpu.cfs_quota_us {quota_us(self.fraction)} / cpu.cfs_period_us {PERIOD_US}"
        )
        return (
            f"{self.fraction:g} of a core each (cgroup v{self.hierarchy.version} at "
            f"{self.hierarchy.mount}, {limit})"
        )
