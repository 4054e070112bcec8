#!/usr/bin/env python3
"""Image upload and download through the gateway's image API (Glance v2), and the gateway's
memory while they run: the data streams, so its peak RSS must not grow with the image.

Starts ``stratus up`` (bench/stratus_bench.py's deployment, fake driver) on a fresh database,
then for each size (default 256 MiB, then 1 GiB): creates an image, uploads the bytes with
``PUT /image/v2/images/{id}/file`` (chunked, generated as they are sent: this process holds
one MiB), downloads them back (counting, not keeping), and reads the process's peak RSS
(VmHWM) after each. Prints MB/s each way and the peak RSS after each size.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stratus_bench import (
    Deployment,
    Results,
    create_database,
    drop_database,
    peak_rss_mib,
    wait_ready,
)

MIB = 1 << 20
_BLOCK = os.urandom(MIB)


async def generated(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes, one MiB at a time (the last block shorter)."""
    sent = 0
    while sent < size:
        block = _BLOCK[: min(MIB, size - sent)]
        sent += len(block)
        yield block


async def transfer(session: aiohttp.ClientSession, url: str, size: int) -> tuple[float, float]:
    """Create, upload and download one image of ``size`` bytes; (upload, download) MB/s."""
    headers = {"X-Auth-Token": "bench:bench-images"}
    async with session.post(
        f"{url}/image/v2/images",
        json={"name": f"bench-{size}", "disk_format": "raw", "container_format": "bare"},
        headers=headers,
    ) as response:
        if response.status != 201:
            raise SystemExit(f"create failed: {response.status} {await response.text()}")
        image_id = (await response.json())["id"]
    file_url = f"{url}/image/v2/images/{image_id}/file"

    started = time.perf_counter()
    async with session.put(
        file_url,
        data=generated(size),
        headers={**headers, "Content-Type": "application/octet-stream"},
    ) as response:
        if response.status != 204:
            raise SystemExit(f"upload failed: {response.status} {await response.text()}")
    upload_s = time.perf_counter() - started

    started = time.perf_counter()
    received = 0
    digest = hashlib.md5(usedforsecurity=False)
    async with session.get(file_url, headers=headers) as response:
        expected = response.headers.get("Content-MD5")
        async for chunk in response.content.iter_chunked(MIB):
            received += len(chunk)
            digest.update(chunk)
    download_s = time.perf_counter() - started
    if received != size or digest.hexdigest() != expected:
        raise SystemExit(f"download of {image_id} differs from the upload")
    return size / MIB / upload_s, size / MIB / download_s


async def run(args: argparse.Namespace) -> None:
    name, database_url = await create_database(args.admin_database_url)
    deployment = Deployment("up", database_url, "", "fake")
    deployment.env["STRATUS_QUOTA_IMAGE_BYTES"] = "-1"
    deployment.start()
    (process,) = deployment.processes.values()
    results = Results()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            await wait_ready(session, deployment.url, database_url)
            results.add(
                "peak RSS of stratus up before any image", f"{peak_rss_mib(process.pid):.0f} MiB"
            )
            for size_mib in args.sizes:
                up, down = await transfer(session, deployment.url, size_mib * MIB)
                results.add(f"upload {size_mib} MiB", f"{up:.0f} MB/s")
                results.add(f"download {size_mib} MiB", f"{down:.0f} MB/s")
                results.add(
                    f"  peak RSS of stratus up after {size_mib} MiB",
                    f"{peak_rss_mib(process.pid):.0f} MiB",
                )
    finally:
        deployment.stop()
        await drop_database(args.admin_database_url, name)
    results.print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[256, 1024], help="image sizes in MiB, in order"
    )
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get(
            "STRATUS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="PostgreSQL server on which a fresh database is made for the run",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
