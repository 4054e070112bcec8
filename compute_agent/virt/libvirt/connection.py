"""The libvirt driver's connection to its hypervisor, kept across restarts of libvirtd.

libvirtd restarts (an upgrade, a crash, an operator's ``systemctl restart``) while its QEMU
guests run on: they are processes of their own, which the new daemon finds again. The
agent's connection does not survive it, though, and an agent that kept the dead one would
leave its host dead to the cloud until someone restarted the agent. So:

* **Noticing.** libvirt calls the close callback (``registerCloseCallback``) from its event
  loop (events.py) when the connection ends on its own: the daemon closed the socket or
  died (end of file), or stopped answering the keepalive probes
  (``setKeepAlive(interval, 5)``: about ``interval * 6`` s of silence, for a daemon that
  hangs or a network that drops everything). A call that fails on a connection libvirt no
  longer holds open (``isAlive``) says the same, in case the callback is late.
* **Meanwhile.** There is no connection: every use fails at once with
  ``HypervisorUnreachable``, a ``DriverError`` that says so, so a command is reported failed
  with that fault rather than hanging, and the agent's heartbeat (which asks the capacity)
  is not sent: the conductor marks the host down only if this lasts ``host_down_after_s``.
  A call that was under way when the daemon died fails with libvirt's own error (the
  daemon's end of file), which the driver reports the same way.
* **Reconnecting.** One task in the agent's event loop opens a new connection, waiting
  0.5 s, 1 s, 2 s ... up to ``reconnect_max_s`` between attempts; each new connection gets
  the keepalive, the close callback and the domain events again (``on_connect``, called
  before anyone can use it), and then those who asked (``on_reconnect``: the agent tells
  its inventory and power states again, as at its start, so that the conductor reconciles
  whatever changed while the events could not be heard).

libvirt's test hypervisor (``test://``) lives in the agent's process and never closes: it
gets neither keepalive nor close callback, and nothing here ever reconnects it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import libvirt

from compute_agent.virt.driver import DriverError

log = logging.getLogger(__name__)

#: unanswered keepalive probes after which libvirt closes the connection
KEEPALIVE_COUNT = 5

#: the first wait between two attempts to reconnect; each failure doubles it
FIRST_BACKOFF_S = 0.5

#: the reasons libvirt gives for a closed connection (``VIR_CONNECT_CLOSE_REASON_*``)
_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "an error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "end of file: libvirtd closed it or died",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "libvirtd stopped answering its keepalives",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by the client",
}


class HypervisorUnreachable(DriverError):
    """The driver has no connection to libvirtd now (it is reconnecting)."""


def backoff_s(attempt: int, cap_s: float) -> float:
    """How long to wait before reconnection attempt ``attempt`` (1, 2, ...): doubling from
    ``FIRST_BACKOFF_S``, never more than ``cap_s``. A daemon that restarts in a second is
    found again at once; one that is down for long is not hammered."""
    return float(min(cap_s, FIRST_BACKOFF_S * 2 ** min(attempt - 1, 30)))


#: what is done with each new connection before it is used (in a worker thread)
ConnectHook = Callable[[Any], None]
#: what is done after a reconnection (in the agent's event loop)
ReconnectCallback = Callable[[], Awaitable[None]]


class LibvirtConnection:
    """The connection to the libvirt at ``uri``: opened by ``open``, reopened whenever it
    closes by itself, released by ``close``."""

    def __init__(
        self,
        uri: str,
        *,
        keepalive_s: int = 5,
        reconnect_max_s: float = 30.0,
        opener: Callable[[str], Any] = libvirt.open,
    ) -> None:
        """``keepalive_s``: libvirt's keepalive interval (0: none); ``reconnect_max_s``: the
        longest wait between reconnection attempts; ``opener``: how a connection is opened
        (``libvirt.open``; tests give a fake)."""
        self.uri = uri
        self.keepalive_s = keepalive_s
        self.reconnect_max_s = reconnect_max_s
        self._opener = opener
        self._conn: Any = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._announcing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._on_connect: list[ConnectHook] = []
        self._on_reconnect: list[ReconnectCallback] = []
        #: connections lost and not yet released (their callbacks, their references)
        self._lost: list[Any] = []
        #: how many times the connection was opened again (for tests and the log)
        self.reconnections = 0

    @property
    def _local(self) -> bool:
        """The test hypervisor: in this process, never closed by anyone else."""
        return self.uri.startswith("test://")

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def current(self) -> Any:
        """The open connection; ``HypervisorUnreachable`` at once while there is none."""
        conn = self._conn
        if conn is None:
            raise HypervisorUnreachable(f"libvirt at {self.uri} is unreachable (reconnecting)")
        return conn

    def on_connect(self, hook: ConnectHook) -> None:
        """Call ``hook(connection)`` (blocking, in a worker thread) on each connection
        opened from now on, before the driver uses it (register before ``open``)."""
        self._on_connect.append(hook)

    def on_reconnect(self, callback: ReconnectCallback) -> None:
        """Await ``callback()`` in the event loop of ``open`` after each reconnection."""
        self._on_reconnect.append(callback)

    async def open(self) -> None:
        """Connect for the first time; a ``DriverError`` if libvirt cannot be reached (the
        agent does not start without its hypervisor)."""
        self._loop = asyncio.get_running_loop()
        self._closed = False
        try:
            conn = await asyncio.to_thread(self._connect)
        except libvirt.libvirtError as exc:
            raise DriverError(f"cannot connect to libvirt at {self.uri}: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        """No more reconnections; the connection released."""
        self._closed = True
        tasks = [*self._announcing, self._reconnecting]
        self._reconnecting = None
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with self._lock:
            conn, self._conn = self._conn, None
            lost, self._lost = self._lost, []
        for dead in lost:
            await asyncio.to_thread(self._release, dead)
        if conn is not None:
            await asyncio.to_thread(self._release, conn)

    # --- noticing a lost connection ------------------------------------------------------

    def check(self) -> bool:
        """After a failed call: is the connection still open? If libvirt says it is not,
        it is lost (as if its close callback had come) and reconnection begins."""
        conn = self._conn
        if conn is None:
            return False
        try:
            alive = bool(conn.isAlive())
        except libvirt.libvirtError:
            alive = False
        if not alive:
            self.lost(conn, "a call found it closed")
        return alive

    def lost(self, conn: Any, why: str) -> None:
        """``conn`` closed (from any thread): stop using it and reconnect. Only the current
        connection counts: a late word about one replaced already changes nothing."""
        with self._lock:
            if conn is not self._conn or self._closed:
                return
            self._conn = None
            self._lost.append(conn)
        log.warning("the connection to libvirt at %s closed (%s): reconnecting", self.uri, why)
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the agent's loop is closed: it stopped
            loop.call_soon_threadsafe(self._start_reconnecting)

    def _closed_by_libvirt(self, conn: Any, reason: int, _opaque: object) -> None:
        """libvirt's close callback, in its event thread."""
        self.lost(conn, _CLOSE_REASONS.get(reason, f"reason {reason}"))

    # --- reconnecting ----------------------------------------------------------------------

    def _start_reconnecting(self) -> None:
        if self._closed or (self._reconnecting is not None and not self._reconnecting.done()):
            return
        self._reconnecting = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Open a new connection, waiting longer after each failure, until connected or
        closed; then the connections lost are released (after the new one's hooks have
        moved the event subscriptions off them) and those who asked are told, in a task of
        their own (the connection may be lost again meanwhile, and must then be reopened at
        once)."""
        attempt = 0
        while not self._closed:
            attempt += 1
            try:
                conn = await asyncio.to_thread(self._connect)
            except libvirt.libvirtError as exc:
                wait_s = backoff_s(attempt, self.reconnect_max_s)
                log.info(
                    "libvirt at %s still unreachable (attempt %d: %s); next in %.1f s",
                    self.uri,
                    attempt,
                    exc,
                    wait_s,
                )
                await asyncio.sleep(wait_s)
                continue
            if self._closed:
                await asyncio.to_thread(self._release, conn)
                return
            with self._lock:
                self._conn = conn
            self.reconnections += 1
            log.warning("reconnected to libvirt at %s (attempt %d)", self.uri, attempt)
            announcing = asyncio.create_task(self._announce())
            self._announcing.add(announcing)
            announcing.add_done_callback(self._announcing.discard)
            return

    async def _announce(self) -> None:
        await self._release_lost()
        for callback in list(self._on_reconnect):
            try:
                await callback()
            except Exception:  # one listener's failure must not keep the others uninformed
                log.exception("after reconnecting to libvirt at %s", self.uri)

    async def _release_lost(self) -> None:
        with self._lock:
            lost, self._lost = self._lost, []
        for conn in lost:
            await asyncio.to_thread(self._release, conn)

    # --- blocking, in worker threads ---------------------------------------------------------

    def _connect(self) -> Any:
        """A new connection, watched and with its hooks run; libvirtError if none."""
        conn = self._opener(self.uri)
        try:
            if not self._local:
                self._watch(conn)
            for hook in self._on_connect:
                hook(conn)
        except BaseException:
            self._release(conn)
            raise
        return conn

    def _watch(self, conn: Any) -> None:
        """Keepalive and close callback on ``conn``. A driver that has neither (libvirt
        says so) is still used: a failed call then finds the connection closed (``check``)."""
        if self.keepalive_s > 0:
            try:
                conn.setKeepAlive(self.keepalive_s, KEEPALIVE_COUNT)
            except libvirt.libvirtError as exc:
                log.warning("no keepalive on the connection to %s: %s", self.uri, exc)
        try:
            conn.registerCloseCallback(self._closed_by_libvirt, None)
        except libvirt.libvirtError as exc:
            log.warning("no close callback on the connection to %s: %s", self.uri, exc)

    def _release(self, conn: Any) -> None:
        """Unregister the close callback (it holds a reference) and close; a connection
        that is dead already may refuse either, which is fine."""
        if not self._local:
            with contextlib.suppress(libvirt.libvirtError):
                conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


class CurrentConnection:
    """Whichever connection is open now, where the driver's code wants a connection object:
    every attribute is the open connection's, and while there is none, asking for one raises
    ``HypervisorUnreachable`` at once. The driver's many call sites (``self._conn.lookupByName``
    ...) thus fail fast without each of them checking."""

    def __init__(self, connection: LibvirtConnection) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection.current(), name)
