"""Run ``stratus`` roles as real processes, the way an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg

from tests.support.sealing import MESSAGE_KEY

STRATUS = str(Path(sys.executable).parent / "stratus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Processes:
    """Started roles; their output goes to files so a failing test can show it."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        """``env`` over this process's environment, with the tests' message key unless
        ``env`` names another (gateways and agents refuse to start without one)."""
        self.log_dir = log_dir
        self.env = {**os.environ, "STRATUS_MESSAGE_KEY": MESSAGE_KEY, **env}
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [STRATUS, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.running.append((name, process))
        return process

    def run(self, *args: str) -> None:
        subprocess.run([STRATUS, *args], env=self.env, check=True, capture_output=True)

    def stop_all(self) -> None:
        for _, process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


async def wait_until_answering(url: str, path: str = "/", timeout_s: float = 30.0) -> None:
    """Wait until ``url + path`` answers 200 (a started role is serving, or ready)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{url}{path}") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}{path} never answered 200")
            await asyncio.sleep(0.1)


async def wait_for_hosts(database_url: str, count: int, timeout_s: float = 30.0) -> None:
    """Wait until ``count`` compute hosts are up (their agents' heartbeats registered)."""
    deadline = time.monotonic() + timeout_s
    conn = await asyncpg.connect(database_url)
    try:
        while await conn.fetchval("SELECT count(*) FROM compute_hosts WHERE up") < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} compute hosts registered")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc (children, then theirs): a server that
    starts helpers in sessions of their own (``su``) is not all in its process group."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the command name (field 2) may hold spaces: the parent pid follows its ')'
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        children = parents.get(queue.pop(), [])
        found += children
        queue += children
    return found
