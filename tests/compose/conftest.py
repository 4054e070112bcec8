"""The compose suite: docker-compose.yml started for real, in CI's variant
(docker-compose.ci.yml: every container on the host's network, on loopback ports of its own,
images built without a registry by deploy/ci/compose-images.sh).

Once per module ``compose_deployment`` runs ``up -d``, waits until every service is healthy, and at
the end ``down -v`` (with whatever a test left). Without docker, docker-compose, a daemon or
the images, the tests skip, saying which; with STRATUS_REQUIRE_COMPOSE=1 (CI) they fail. The
time from ``up`` to the first ACTIVE server and the containers' health are printed at the end
of the session (STRATUS_COMPOSE_REPORT=<file> writes them to a file as well).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.compose import deployment
from tests.compose.deployment import LONG_RUNNING, REPORT, Compose
from tests.support.missing import unavailable

#: every wait for health is bounded by this (the first start on vfs is the slowest)
HEALTHY_WITHIN_S = 300.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "compose: starts docker-compose.yml for real (tests/compose; skipped without Docker "
        "unless STRATUS_REQUIRE_COMPOSE=1)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.compose)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    terminalreporter.write_sep("=", "compose: the deployment as it ran")
    for line in REPORT:
        terminalreporter.write_line(line)
    target = os.environ.get("STRATUS_COMPOSE_REPORT")
    if target:
        Path(target).write_text("\n".join(REPORT) + "\n")


@dataclass
class Deployment:
    compose: Compose
    #: time.monotonic() when `up` was run
    up_at: float
    #: what the tests noted, for the report
    notes: dict[str, float] = field(default_factory=dict)


# per module, not per session: the deployment must be gone before the rest of `make test` runs
# (2 cores, and port 8774)
@pytest.fixture(scope="module")
def compose_deployment() -> Iterator[Deployment]:
    reason = deployment.lacking()
    if reason is not None:
        unavailable(reason, required_by="STRATUS_REQUIRE_COMPOSE")
    compose = Compose()
    compose.run("--profile", "keystone", "down", "-v", "--remove-orphans")  # an earlier run's
    up_at = time.monotonic()
    try:
        compose.run("up", "-d", timeout_s=HEALTHY_WITHIN_S)
        REPORT.append(f"up -d returned after {time.monotonic() - up_at:.1f} s")
        waited = compose.wait_healthy(["migrate", *LONG_RUNNING], timeout_s=HEALTHY_WITHIN_S)
        REPORT.append(
            f"every service healthy {time.monotonic() - up_at:.1f} s after up "
            f"(waited {waited:.1f} s after up -d returned)"
        )
        REPORT.append("docker ps, every service healthy:\n" + compose.table())
        yield Deployment(compose, up_at)
    finally:
        REPORT.append("docker ps before down:\n" + compose.table())
        down_at = time.monotonic()
        compose.run("--profile", "keystone", "down", "-v", "--remove-orphans", check=False)
        REPORT.append(f"down -v took {time.monotonic() - down_at:.1f} s")
