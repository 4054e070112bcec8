"""``stratus agent --simulate N``: the command-line side of a simulated cluster.

The agents themselves are compute_agent/simulation.py's; this module adds the options to
``stratus agent`` (``--simulate``, ``--simulate-prefix`` and the capacity every host reports,
``--vcpus``, ``--ram-mb``, ``--disk-gb``, which a real agent takes too), turns them into
settings, and runs the role: progress while the agents start, then one line with the time it
took and the memory the process holds, so that what a big simulation costs is plain to see.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Any

from compute_agent.simulation import AgentOptions, Simulation, host_names
from compute_agent.virt.driver import ComputeDriver
from compute_agent.virt.factory import create_driver
from shared.bus import Bus
from shared.bus.factory import create_bus
from shared.config import Settings
from stratus.runtime import require, require_keyring, wait_for_shutdown

#: ``stratus agent`` option (argparse dest) -> the setting it overrides
_SETTINGS = {
    "simulate": "simulate_agents",
    "simulate_prefix": "simulate_prefix",
    "vcpus": "host_vcpus",
    "ram_mb": "host_ram_mb",
    "disk_gb": "host_disk_gb",
}


def add_arguments(agent: argparse.ArgumentParser) -> None:
    """The simulation and capacity options of ``stratus agent``."""
    agent.add_argument(
        "--simulate",
        type=int,
        metavar="N",
        help="run N simulated hosts (in-memory hypervisors) in this process "
        "(STRATUS_SIMULATE_AGENTS)",
    )
    agent.add_argument(
        "--simulate-prefix",
        metavar="PREFIX",
        help="the simulated hosts' names: PREFIX-0001 ... (default: sim)",
    )
    agent.add_argument("--vcpus", type=int, help="vCPUs each host reports (STRATUS_HOST_VCPUS)")
    agent.add_argument("--ram-mb", type=int, help="RAM each host reports (STRATUS_HOST_RAM_MB)")
    agent.add_argument("--disk-gb", type=int, help="disk each host reports (STRATUS_HOST_DISK_GB)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the given options override (none for other subcommands)."""
    return {
        setting: getattr(args, option)
        for option, setting in _SETTINGS.items()
        if getattr(args, option, None) is not None
    }


def simulation(settings: Settings) -> Simulation:
    """The simulated cluster the settings describe."""

    def new_bus() -> Bus:
        return create_bus(settings)

    def new_driver() -> ComputeDriver:
        return create_driver(settings, kind="fake")

    return Simulation(
        host_names(settings.simulate_prefix, settings.simulate_agents),
        new_bus,
        new_driver,
        AgentOptions.of(settings, require_keyring(settings)),
        per_connection=settings.simulate_agents_per_connection,
    )


def _progress(started: int, total: int, elapsed_s: float) -> None:
    """A line at every tenth of the agents (and the last), on stderr."""
    step = max(1, total // 10)
    if started % step == 0 or started == total:
        print(f"simulate: {started}/{total} agents started ({elapsed_s:.1f} s)", file=sys.stderr)


def peak_rss_mib() -> float:
    """The most memory this process has held (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(settings: Settings) -> None:
    """The ``stratus agent`` role with ``simulate_agents`` > 0."""
    require(settings.amqp_url, "STRATUS_AMQP_URL")  # in-process, no conductor would hear them
    cluster = simulation(settings)
    began = time.monotonic()
    await cluster.start(_progress)
    hosts = cluster.hosts
    print(
        f"simulate: {len(hosts)} hosts up ({hosts[0]} … {hosts[-1]}) in "
        f"{time.monotonic() - began:.1f} s on {len(cluster.buses)} connection(s); "
        f"peak RSS {peak_rss_mib():.0f} MiB",
        file=sys.stderr,
        flush=True,
    )
    try:
        await wait_for_shutdown()
    finally:
        await cluster.stop()
