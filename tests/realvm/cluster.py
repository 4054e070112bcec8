"""The realvm suite's system as its tests see it: two real hypervisor hosts, their guests'
consoles, and what a server leaves on them.

Everything about a guest is read where a user would find it: its serial console (the file
the domain's XML logs it to, on the host the server is on), and the files and domains of
the hosts. Blocking libvirt calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from compute_agent.virt.driver import ComputeDriver
from stratus.images import Guest
from stratus.system import System
from tests.realvm.stopwatch import Stopwatch
from tests.support.actions import act as send_action
from tests.support.actions import actions_of, wait_until_action_done
from tests.support.client import ComputeClient
from tests.support.libvirtd import Libvirtd


def _libvirt() -> Any:
    """The libvirt binding, imported when a test first talks to a daemon: on a machine without
    it the suite must still be collected, and skip saying what is missing (conftest.py)."""
    import libvirt

    return libvirt


#: the line the guest prints at boot and every 2 s (deploy/guest/README.md)
STATUS_LINE = re.compile(
    r"stratus-guest: boot=(?P<boot>\d+) up=(?P<up>[\d.]+) mem=(?P<mem>\d+)kB disk=(?P<disk>\d+)s"
)

#: how long a guest may take to boot under TCG on a busy 2-core machine
BOOT_TIMEOUT_S = 120.0

GIB = 1024**3


@dataclass(frozen=True)
class GuestStatus:
    """One status line of a guest: which boot of its disk, how long up, what it sees."""

    boot: int
    up: float
    mem_kb: int
    disk_sectors: int

    @property
    def disk_gb(self) -> float:
        return self.disk_sectors * 512 / 1024**3


def statuses(text: str) -> list[GuestStatus]:
    return [
        GuestStatus(int(m["boot"]), float(m["up"]), int(m["mem"]), int(m["disk"]))
        for m in STATUS_LINE.finditer(text)
    ]


@dataclass(frozen=True)
class Mark:
    """A place in a server's console: how far each of its console log files went (by file,
    not by path: a resize moves the original's directory aside and back, a move starts a
    log on the other host). What was printed before is not looked at."""

    sizes: dict[tuple[int, int], int]


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino)


def _read_after(path: Path, mark: Mark | None) -> str:
    """The log at ``path`` after ``mark`` (all of it for a file the mark did not see, or
    that has been cut shorter since)."""
    try:
        with path.open("rb") as log:
            info = os.fstat(log.fileno())
            offset = 0 if mark is None else mark.sizes.get((info.st_dev, info.st_ino), 0)
            log.seek(offset if offset <= info.st_size else 0)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


class _ConsoleSession:
    """One conversation on a domain's serial console through libvirt, as ``virsh console``
    has it (blocking: run it in a worker thread). What is typed reaches the guest only while
    the stream stays open, so every step also reads what the guest prints: it prints a status
    line every 2 s, so a read never waits long."""

    def __init__(self, conn: Any, domain: str) -> None:
        self.conn = conn
        self.domain = domain
        self.received = ""

    def run(self, steps: Callable[[Any], None]) -> None:
        stream = self.conn.newStream(0)
        self.conn.lookupByName(self.domain).openConsole(
            None, stream, _libvirt().VIR_DOMAIN_CONSOLE_FORCE
        )
        try:
            steps(stream)
        except BaseException:
            stream.abort()
            raise
        stream.finish()

    def type(self, stream: Any, text: str, *, expect: str = "", settle_s: float = 1.0) -> None:
        """Type ``text``, then read until the guest has printed ``expect`` (or, expecting
        nothing, for ``settle_s`` while the guest takes it)."""
        start = len(self.received)
        data = text.encode()
        while data:
            data = data[stream.send(data) :]
        if not expect:
            until = time.monotonic() + settle_s
            while time.monotonic() < until:
                self._receive(stream)
            return
        # by time, not by reads: a guest under TCG on a busy machine prints a few bytes at
        # a time, so a count of reads can run out in the middle of its banner
        until = time.monotonic() + 60.0
        while time.monotonic() < until:
            self._receive(stream)
            if expect in self.received[start:]:
                return
        raise AssertionError(
            f"{expect!r} never came on the console of {self.domain}:\n{self.received[-500:]}"
        )

    def _receive(self, stream: Any) -> None:
        chunk = stream.recv(4096)
        if not chunk:
            raise AssertionError(f"the console of {self.domain} closed")
        self.received += chunk.decode(errors="replace")


@dataclass
class RealCluster:
    system: System
    daemons: dict[str, Libvirtd]
    drivers: dict[str, ComputeDriver]
    instances_dirs: dict[str, Path]
    #: each host's images downloaded from the image API (``<data_dir>/_base``)
    image_caches: dict[str, Path]
    store: Path
    guest: Guest
    #: the guest's image id
    image_id: str
    stopwatch: Stopwatch
    _connections: dict[str, Any] = field(default_factory=dict)

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.system.pool is not None
        return self.system.pool

    def client(self, http: Any, tenant: str, user: str) -> ComputeClient:
        return ComputeClient(http, self.system.url, tenant, user)

    def other(self, host: str) -> str:
        return next(h for h in self.daemons if h != host)

    # --- the hosts ---------------------------------------------------------------------------

    def _conn(self, host: str) -> Any:
        """The suite's own connection to ``host``'s libvirtd (not the agent's)."""
        if host not in self._connections:
            self._connections[host] = _libvirt().open(self.daemons[host].uri)
        return self._connections[host]

    def add_host(
        self,
        host: str,
        daemon: Libvirtd,
        driver: ComputeDriver,
        *,
        instances_dir: Path,
        image_cache: Path,
    ) -> None:
        """Look at ``host`` too (one a test starts for itself), until ``forget_host``. The
        session's dicts are left as they were."""
        self.daemons = {**self.daemons, host: daemon}
        self.drivers = {**self.drivers, host: driver}
        self.instances_dirs = {**self.instances_dirs, host: instances_dir}
        self.image_caches = {**self.image_caches, host: image_cache}

    def forget_host(self, host: str) -> None:
        """Stop looking at a host ``add_host`` added (before its daemon stops)."""
        for hosts in (self.daemons, self.drivers, self.instances_dirs, self.image_caches):
            hosts.pop(host, None)
        conn = self._connections.pop(host, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    async def host_of(self, server_id: str) -> str:
        host: str | None = await self.pool.fetchval(
            "SELECT host FROM servers WHERE id = $1", uuid.UUID(server_id)
        )
        assert host is not None, f"server {server_id} is on no host"
        return host

    async def domains(self) -> dict[str, list[str]]:
        """Every domain of every host, by host (whatever the agents think)."""

        def names(host: str) -> list[str]:
            return sorted(d.name() for d in self._conn(host).listAllDomains())

        return {host: await asyncio.to_thread(names, host) for host in self.daemons}

    async def domain_xml(self, host: str, server_id: str, *, inactive: bool = False) -> str:
        def read() -> str:
            dom = self._conn(host).lookupByName(f"instance-{server_id}")
            xml: str = dom.XMLDesc(_libvirt().VIR_DOMAIN_XML_INACTIVE if inactive else 0)
            return xml

        return await asyncio.to_thread(read)

    def instance_files(self, server_id: str) -> list[str]:
        """The server's files on the hosts (``<host>: <path>``): in an instances directory
        (its own directory, a resize's original) or on their way in the image store."""
        found = []
        for host, directory in self.instances_dirs.items():
            found += [f"{host}: {p}" for p in sorted(directory.glob(f"{server_id}*"))]
        found += [str(p) for p in sorted((self.store / "transfers").glob(f"{server_id}*"))]
        return found

    def libvirt_state(self, server_id: str) -> list[str]:
        """What the libvirtds keep of the server: definition, sockets, pid files, saved
        memory. (libvirt's own logs of the domain, ``/var/log/libvirt``, are kept, as
        libvirt keeps them for every domain.)"""
        found = []
        for host, daemon in self.daemons.items():
            for system_dir in ("/run/libvirt", "/var/lib/libvirt", "/etc/libvirt"):
                private = daemon.private(system_dir)
                found += [f"{host}: {p}" for p in sorted(private.rglob(f"*{server_id}*"))]
            found += [f"{host}: {p}" for p in daemon.managed_save_files()]
        return found

    def leftovers(self, server_id: str) -> list[str]:
        """Everything of the server still on a host (none, once it is deleted)."""
        return self.instance_files(server_id) + self.libvirt_state(server_id)

    # --- a guest's console -------------------------------------------------------------------

    async def console_log(self, server_id: str) -> Path:
        """The file the serial console of the server is logged to, on its host."""
        xml = await self.domain_xml(await self.host_of(server_id), server_id, inactive=True)
        root = ET.fromstring(xml)
        for serial in root.findall("devices/serial"):
            log = serial.find("log")
            if log is not None and log.get("file"):
                return Path(log.get("file", ""))
            source = serial.find("source")
            if serial.get("type") == "file" and source is not None and source.get("path"):
                return Path(source.get("path", ""))
        raise AssertionError(f"the console of server {server_id} is not logged to a file")

    def _console_logs(self, server_id: str) -> list[Path]:
        """Every console log of the server on the hosts (its own, a resize's original)."""
        return [
            log
            for directory in self.instances_dirs.values()
            for log in directory.glob(f"{server_id}*/console.log")
        ]

    async def mark(self, server_id: str) -> Mark:
        """How far the server's console logs go now."""
        logs = [*self._console_logs(server_id), await self.console_log(server_id)]
        sizes = {}
        for log in logs:
            key = _file_key(log)
            if key is not None:
                sizes[key] = log.stat().st_size
        return Mark(sizes)

    async def console_since(self, server_id: str, mark: Mark | None = None) -> str:
        return _read_after(await self.console_log(server_id), mark)

    async def wait_console(
        self,
        server_id: str,
        pattern: str,
        *,
        since: Mark | None = None,
        timeout_s: float = BOOT_TIMEOUT_S,
    ) -> re.Match[str]:
        """The first match of ``pattern`` printed on the console (after ``since``)."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            text = await self.console_since(server_id, since)
            found = compiled.search(text)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                tail = "\n".join(text.splitlines()[-15:])
                raise AssertionError(f"never on the console of {server_id}: {pattern}\n{tail}")
            await asyncio.sleep(0.25)

    async def wait_status(
        self,
        server_id: str,
        condition: Callable[[GuestStatus], bool],
        *,
        since: Mark | None = None,
        timeout_s: float = BOOT_TIMEOUT_S,
    ) -> GuestStatus:
        """The first status line (after ``since``) the guest prints that meets ``condition``."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = statuses(await self.console_since(server_id, since))
            for status in seen:
                if condition(status):
                    return status
            if time.monotonic() > deadline:
                raise AssertionError(f"server {server_id} never printed such a status: {seen}")
            await asyncio.sleep(0.25)

    async def booted(self, server_id: str, *, since: Mark | None = None) -> GuestStatus:
        """Wait for the login prompt (after ``since``); the status line printed before it."""
        await self.wait_console(server_id, re.escape(self.guest.login_prompt), since=since)
        return await self.wait_status(server_id, lambda _: True, since=since)

    async def _on_console(
        self, server_id: str, steps: Callable[[_ConsoleSession, Any], None], timeout_s: float
    ) -> None:
        host = await self.host_of(server_id)
        session = _ConsoleSession(self._conn(host), f"instance-{server_id}")
        work = asyncio.to_thread(session.run, lambda stream: steps(session, stream))
        await asyncio.wait_for(work, timeout_s)

    async def type_on_console(self, server_id: str, text: str, *, timeout_s: float = 30) -> None:
        """Type ``text`` on the server's serial console (as ``virsh console`` would)."""
        await self._on_console(server_id, lambda session, s: session.type(s, text), timeout_s)

    async def answers_on_console(self, server_id: str, *, timeout_s: float = 60.0) -> None:
        """Log in on the server's serial console as root (no password is set), have the
        shell compute something, log out: the guest runs and answers its console."""
        token = uuid.uuid4().hex[:6]

        def converse(session: _ConsoleSession, stream: Any) -> None:
            session.type(stream, "\r", expect=self.guest.login_prompt)  # a fresh prompt
            session.type(stream, "root\r", expect="# ")
            session.type(stream, f"echo answer-{token}-$((6 * 7))\r", expect=f"-{token}-42")
            session.type(stream, "exit\r")

        await self._on_console(server_id, converse, timeout_s)

    # --- what a user does --------------------------------------------------------------------

    async def boot(
        self,
        api: ComputeClient,
        name: str,
        *,
        flavor: str = "rv.tiny",
        image: str = "",
        label: str = "boot",
    ) -> tuple[str, GuestStatus]:
        """Create a server and wait for its login prompt; timed (as ``label``) to ACTIVE and
        to the prompt. Returns its id and the status line the guest printed coming up."""
        started = time.monotonic()
        reply = await api.create_server(name, image or self.image_id, flavor)
        assert reply.status == 202, reply
        server_id: str = reply.body["server"]["id"]
        await api.wait_for_status(server_id, "ACTIVE", timeout_s=BOOT_TIMEOUT_S)
        self.stopwatch.record(f"{label}: create → ACTIVE", time.monotonic() - started)
        status = await self.booted(server_id)
        self.stopwatch.record(f"{label}: create → login prompt", time.monotonic() - started)
        return server_id, status

    async def act(
        self,
        client: ComputeClient,
        server_id: str,
        body: dict[str, Any],
        *,
        until: str,
        timing: str,
        timeout_s: float = BOOT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send the action ``body``, wait until it is done (successfully) and the server
        shows ``until``; timed as ``timing``. The server's representation."""
        (action,) = body
        started = time.monotonic()
        reply = await send_action(client, server_id, body)
        assert reply.status in (202, 204), reply
        await wait_until_action_done(self.pool, server_id, timeout_s)
        server = await client.wait_for_status(server_id, until, timeout_s=timeout_s)
        self.stopwatch.record(timing, time.monotonic() - started)
        done = await actions_of(self.pool, server_id)
        # (a hard reboot is recorded as reboot_hard)
        assert done[-1][0].startswith(action), done
        assert done[-1][1] == "success", (done, await self.faults(server_id))
        return server

    async def faults(self, server_id: str) -> list[str]:
        """The messages of the server's faults and failed actions, oldest first."""
        rows = await self.pool.fetch(
            """SELECT message FROM server_faults WHERE server_id = $1
               UNION ALL
               SELECT action || ': ' || coalesce(message, '') FROM actions
                WHERE server_id = $1 AND result = 'error'""",
            uuid.UUID(server_id),
        )
        return [r["message"] for r in rows]

    async def delete(self, client: ComputeClient, server_id: str) -> None:
        """Delete the server; timed until it is gone from the API."""
        async with self.stopwatch.measure("delete → gone"):
            reply = await client.delete(f"/servers/{server_id}")
            assert reply.status == 204, reply
            await client.wait_for_status(server_id, "DELETED", timeout_s=BOOT_TIMEOUT_S)
