"""The distributed benchmark's own arithmetic (bench/distributed.py, bench/proc_cpu.py): how it
reads /proc, whose processes it charges, its percentiles and its tables. Nothing is timed."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    """A module of bench/ (not a package: its scripts import each other by bare name)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


proc_cpu = _load("proc_cpu")
distributed = _load("distributed")


def stat_line(
    pid: int,
    ppid: int,
    pgrp: int,
    utime: int,
    stime: int,
    cutime: int = 0,
    cstime: int = 0,
    comm: str = "postgres",
) -> str:
    """A /proc/<pid>/stat line as the kernel writes it (52 fields)."""
    head = [pid, f"({comm})", "S", ppid, pgrp, pgrp, 0, -1, 4194560, 0, 0, 0, 0]
    return " ".join(map(str, [*head, utime, stime, cutime, cstime, *[0] * 35]))


def test_a_stat_line_is_read_from_after_the_command_name() -> None:
    # a command name may hold spaces and parentheses: the fields follow its last ')'
    stat = proc_cpu.parse_stat(stat_line(42, 7, 40, 150, 30, 12, 8, comm="a (b) c"))
    assert (stat.pid, stat.ppid, stat.pgrp) == (42, 7, 40)
    assert (stat.utime, stat.stime, stat.cutime, stat.cstime) == (150, 30, 12, 8)
    assert stat.own_ticks == 180
    assert stat.total_ticks == 200


@pytest.fixture
def machine() -> Iterator[dict[int, Any]]:
    """A postmaster (10) with two backends (11, 12; 12 has a child 13), a wrapper (20)
    whose group holds 21 while the VM (22) is below it in another session, a stranger (30)."""
    lines = [
        stat_line(10, 1, 10, 100, 50, cutime=40, cstime=10),  # 50 ticks of reaped backends
        stat_line(11, 10, 10, 200, 100),
        stat_line(12, 10, 10, 30, 20),
        stat_line(13, 12, 10, 5, 5),
        stat_line(20, 1, 20, 1, 1),
        stat_line(21, 20, 20, 2, 2),
        stat_line(22, 21, 22, 300, 100),
        stat_line(30, 1, 30, 999, 999),
    ]
    yield {s.pid: s for s in map(proc_cpu.parse_stat, lines)}


def test_a_tree_is_its_root_and_everything_below_it(machine: dict[int, Any]) -> None:
    assert proc_cpu.tree(machine, 10) == {10, 11, 12, 13}
    assert proc_cpu.tree(machine, 99) == set()


def test_a_group_and_a_tree_together_find_a_vm_in_another_session(
    machine: dict[int, Any],
) -> None:
    assert proc_cpu.group(machine, 20) == {20, 21}
    assert proc_cpu.members(machine, [20], [20]) == {20, 21, 22}


def test_cpu_counts_reaped_children_and_leaves_out_the_excluded(
    machine: dict[int, Any],
) -> None:
    ticks = proc_cpu.TICKS
    # 150 + 50 reaped + 300 + 50 + 10
    assert proc_cpu.cpu_seconds(machine, proc_cpu.tree(machine, 10)) == 560 / ticks
    # the benchmark's own session (11) is not the database's work
    assert proc_cpu.cpu_seconds(machine, {10, 11, 12, 13}, excluded=[11]) == 260 / ticks
    # a pid that ended between the listing and the reading counts nothing
    assert proc_cpu.cpu_seconds(machine, {10, 404}) == 200 / ticks


def test_a_kib_field_is_read_by_its_name() -> None:
    text = "Name:\tpython\nVmHWM:\t  81234 kB\nVmRSS:\t  80000 kB\n"
    assert proc_cpu.parse_kib(text, "VmRSS") == 80000
    assert proc_cpu.parse_kib(text, "VmHWM") == 81234
    assert proc_cpu.parse_kib("Rss: 10 kB\nPss: 7 kB\n", "Pss") == 7
    assert proc_cpu.parse_kib(text, "Pss") is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 201)]  # 1 .. 200, shuffled order must not matter
    values.reverse()
    assert distributed.percentile(values, 50) == 100.0
    assert distributed.percentile(values, 99) == 198.0
    assert distributed.percentile(values, 100) == 200.0
    assert distributed.percentile([5.0], 99) == 5.0
    assert distributed.percentile([1.0, 2.0, 3.0], 0) == 1.0


def test_the_cpu_table_gives_ms_per_boot_by_role_and_the_total() -> None:
    used = {"postgres": 1.24, "rabbitmq": 0.72, "gateway": 0.56, "conductor": 1.0, "agents": 0.4}
    lines = distributed.cpu_table(used, 400)
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["postgres"] == ["1.24", "3.10", "32%"]
    assert rows["conductor"] == ["1.00", "2.50", "26%"]
    assert rows["total"] == ["3.92", "9.80", "100%"]
    assert [line.split()[0] for line in lines[1:]] == [
        "postgres",
        "rabbitmq",
        "gateway",
        "conductor",
        "agents",
        "total",
    ]


def test_a_shared_server_is_na_and_left_out_of_the_total() -> None:
    used = {"postgres": None, "rabbitmq": None, "gateway": 0.5, "conductor": 1.0, "agents": 0.5}
    lines = distributed.cpu_table(used, 200)
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["postgres"] == ["n/a", "n/a"]
    assert rows["total*"][:2] == ["2.00", "10.00"]
    assert lines[-1].startswith("*")


def test_the_lock_wait_share_is_of_the_active_backends_seen() -> None:
    kind = distributed.wait_kind
    assert kind(None, None, None) == "running"
    assert kind("IO", "WalWrite", None) == "IO:WalWrite"
    assert kind("Lock", "transactionid", None) == "Lock:transactionid"
    assert kind("Lock", "advisory", 0x1BA4) == "Lock:advisory (network address lock (ipam))"
    assert kind("Lock", "advisory", 0x77) == "Lock:advisory (class 0x77)"
    share = distributed.LockShare()
    ipam = "Lock:advisory (network address lock (ipam))"
    share.add(
        [
            ("running", "SELECT 1"),
            (ipam, "SELECT  pg_advisory_xact_lock($1)"),
            ("Lock:tuple", "UPDATE servers"),
        ]
    )
    share.add([])
    share.add([("running", "SELECT 1"), (ipam, "SELECT pg_advisory_xact_lock($1)")])
    assert (share.samples, share.active, share.waiting_on_locks) == (3, 5, 3)
    assert share.share == 0.6
    lines = share.lines()
    assert "lock-wait share 60.0%" in lines[0]
    # the waiting statements, whitespace folded, the most frequent first
    waiting = lines[lines.index("the statements waiting on a lock:") + 1 :]
    assert waiting[0].split("%", 1)[1].strip() == f"{ipam}: SELECT pg_advisory_xact_lock($1)"
    assert "40.0%" in waiting[0]
    assert distributed.LockShare().share == 0.0


def test_conductor_counts_are_one_or_a_sweep() -> None:
    assert distributed.conductor_counts("2") == [2]
    assert distributed.conductor_counts("1,2,4") == [1, 2, 4]
    for bad in ("0", "1,x", ""):
        with pytest.raises(Exception, match="count"):
            distributed.conductor_counts(bad)
    assert distributed.parse_args(["--conductors", "1,2,4"]).conductors == [1, 2, 4]


def test_rabbitmq_counters_are_read_from_the_eval_answer() -> None:
    assert distributed.parse_counters('"1200 1180 1175"\n') == (1200, 1180, 1175)
    assert distributed.parse_counters("{badrpc,nodedown}\n") is None
    assert distributed.parse_counters('"1 2"') is None


cgroups = _load("cgroups")


def test_a_share_of_a_core_is_a_quota_per_period() -> None:
    assert cgroups.quota_us(0.15) == 15000
    assert cgroups.cpu_max(0.15) == "15000 100000"
    assert cgroups.cpu_max(0.2) == "20000 100000"
    assert cgroups.cpu_max(2) == "200000 100000"  # more than a core: more than the period
    assert cgroups.cpu_max(0.5, period_us=50_000) == "25000 50000"
    # the kernel refuses a quota under 1 ms
    with pytest.raises(ValueError, match="1 ms"):
        cgroups.quota_us(0.005)


def test_the_conductor_cpu_option_takes_a_share_the_kernel_accepts() -> None:
    assert distributed.parse_args([]).conductor_cpu is None
    assert distributed.parse_args(["--conductor-cpu", "0.15"]).conductor_cpu == 0.15
    for bad in ("0", "-1", "0.001", "x", "nan", "inf"):
        with pytest.raises(Exception, match="share of a core"):
            distributed.cpu_fraction(bad)


MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
proc /proc proc rw 0 0
"""


def test_the_cpu_hierarchies_are_the_cgroup2_mounts_then_v1_ones_with_cpu() -> None:
    found = cgroups.cpu_hierarchies(MOUNTS)
    assert found == [
        cgroups.Hierarchy(2, Path("/sys/fs/cgroup/unified")),
        cgroups.Hierarchy(1, Path("/sys/fs/cgroup/cpu")),
    ]
    both = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"
    assert cgroups.cpu_hierarchies(both) == [
        cgroups.Hierarchy(1, Path("/sys/fs/cgroup/cpu,cpuacct"))
    ]
    assert cgroups.cpu_hierarchies("cgroup /x cgroup rw,cpuacct 0 0\n") == []


def _v2_root(tmp_path: Path, controllers: str) -> Path:
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("\n")
    (root / "cgroup.procs").write_text("")
    return root


def test_a_v2_group_gets_cpu_max_and_is_removed_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a directory standing for a cgroup2 mount: the files the kernel would make are written
    # by the limiter itself here, which is enough to see what it writes where; and as a
    # cgroup's files go with it, rmdir takes a test directory's files first
    root = _v2_root(tmp_path, "cpuset cpu io memory pids")
    original = Path.rmdir

    def rmdir(path: Path) -> None:
        for child in path.iterdir():
            if child.is_file():
                child.unlink()
        original(path)

    monkeypatch.setattr(Path, "rmdir", rmdir)
    limiter = cgroups.CpuLimiter.create(0.2, f"cgroup2 {root} cgroup2 rw 0 0\n", "bench")
    assert (root / "cgroup.subtree_control").read_text() == "+cpu"
    assert (root / "bench" / "cgroup.subtree_control").read_text() == "+cpu"
    assert not (root / "bench" / "probe").exists()  # the trial group is gone
    limiter.limit("conductor-1", 4242)
    group = root / "bench" / "conductor-1"
    assert (group / "cpu.max").read_text() == "20000 100000"
    assert (group / "cgroup.procs").read_text() == "4242"
    (group / "cpu.stat").write_text(
        "usage_usec 10\nnr_periods 40\nnr_throttled 30\nthrottled_usec 1500000\n"
    )
    assert limiter.throttling() == cgroups.Throttling(40, 30, 1.5)
    assert limiter.throttling(["conductor-1", "gone"]) == cgroups.Throttling(40, 30, 1.5)
    assert "cpu.max '20000 100000'" in limiter.describe()
    assert limiter.close() == []
    assert (root / "cgroup.procs").read_text() == "4242"  # moved back to the root
    assert not (root / "bench").exists()


def test_no_cpu_controller_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    root = _v2_root(tmp_path, "memory pids")
    with pytest.raises(cgroups.CgroupError, match="cpu controller is not available") as raised:
        cgroups.CpuLimiter.create(0.2, f"cgroup2 {root} cgroup2 rw 0 0\n", "bench")
    assert "cgroup v2 at" in str(raised.value)
    assert not (root / "bench").exists()
    with pytest.raises(cgroups.CgroupError, match="no cgroup2 mount"):
        cgroups.CpuLimiter.create(0.2, "proc /proc proc rw 0 0\n")


def test_throttling_is_read_from_either_version_and_subtracted() -> None:
    v1 = cgroups.parse_cpu_stat("nr_periods 100\nnr_throttled 25\nthrottled_time 2000000000\n")
    v2 = cgroups.parse_cpu_stat("nr_periods 50\nnr_throttled 50\nthrottled_usec 500000\n")
    total = cgroups.Throttling.of(v1) + cgroups.Throttling.of(v2)
    assert total == cgroups.Throttling(150, 75, 2.5)
    assert total.share == 0.5
    assert (total - cgroups.Throttling.of(v2)) == cgroups.Throttling(100, 25, 2.0)
    assert cgroups.Throttling().share == 0.0


def test_a_machine_without_a_cpu_quota_ends_the_run_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # distributed.py imported bench/cgroups.py by its bare name: that module's classes
    def refuse(fraction: float) -> None:
        raise distributed.cgroups.CgroupError("cgroup v2 at /sys/fs/cgroup: Read-only file system")

    def no_nodes(external: bool) -> None:
        raise AssertionError("no PostgreSQL or RabbitMQ is started")

    monkeypatch.setattr(distributed.cgroups.CpuLimiter, "create", refuse)
    monkeypatch.setattr(distributed, "own_nodes", no_nodes)
    args = distributed.parse_args(["--conductor-cpu", "0.1"])
    with pytest.raises(SystemExit) as ended:
        asyncio.run(distributed.main_async(args))
    assert ended.value.code == 2
    assert "--conductor-cpu: cgroup v2 at /sys/fs/cgroup: Read-only" in capsys.readouterr().out
