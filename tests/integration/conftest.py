"""Fixtures of the integration suites that need servers of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.missing import unavailable
from tests.support.radosgw import RADOSGW, RadosGateway, S3Account, missing_programs


@pytest.fixture(scope="session")
def radosgw() -> Iterator[S3Account]:
    """A real S3 server: radosgw on a throw-away Ceph cluster (tests/support/radosgw.py).
    Without Ceph's packages the tests that use it skip, saying what to install; CI sets
    STRATUS_REQUIRE_S3, which makes that a failure."""
    missing = missing_programs()
    if missing:
        unavailable(f"{RADOSGW} ({', '.join(missing)} not found)", required_by="STRATUS_REQUIRE_S3")
    gateway = RadosGateway()
    try:
        yield gateway.start()
    finally:
        gateway.close()
