"""Fixtures of the integration suites that need servers of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.image_data.s3 import S3ImageData
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


async def new_bucket(account: S3Account) -> S3ImageData:
    """A store on a new bucket of ``account`` (close it with ``aclose``)."""
    store = S3ImageData(
        f"images-{uuid.uuid4().hex[:10]}",
        endpoint_url=account.endpoint,
        access_key=account.access_key,
        secret_key=account.secret_key,
        region=account.region,
    )
    await (await store.client()).create_bucket(Bucket=store.bucket)
    return store
