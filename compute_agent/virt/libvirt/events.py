"""libvirt's domain events: one event loop per process in a thread of its own, and what the
driver listens to on its connection.

libvirt delivers events (a domain started, stopped, was paused, rebooted...) through an
event loop the application provides. The driver uses libvirt's default one
(``virEventRegisterDefaultImpl``) run by a daemon thread (``ensure_loop``); it must be
registered before a connection opens (a remote connection also needs it for its
keepalives), so the driver calls ``ensure_loop`` before it connects.

Callbacks run in that thread. ``DomainEvents`` hands each lifecycle event to the agent's
listener in the agent's own asyncio loop (``call_soon_threadsafe``): whoever caused it, a
command or the guest itself, the agent then checks and reports the server's power state.
It also wakes the driver's waiters: a soft reboot waits for its guest to reboot. It lives as
long as the driver: when libvirtd restarts, the driver's new connection is subscribed again
(``subscribe``), and the agent's listener and the waiters stay.

libvirt's test hypervisor emits lifecycle events too (shared by every connection of a
process to ``test:///default``), though none for a reboot, which it does at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import libvirt

log = logging.getLogger(__name__)

#: called with a domain's name when its lifecycle state changed
Listener = Callable[[str], None]

#: lifecycle events that change a domain's power state (not: defined, undefined)
POWER_EVENTS = frozenset(
    {
        libvirt.VIR_DOMAIN_EVENT_STARTED,
        libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
        libvirt.VIR_DOMAIN_EVENT_RESUMED,
        libvirt.VIR_DOMAIN_EVENT_STOPPED,
        libvirt.VIR_DOMAIN_EVENT_SHUTDOWN,
        libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED,
        libvirt.VIR_DOMAIN_EVENT_CRASHED,
    }
)

_loop_lock = threading.Lock()
_loop_started = False


def ensure_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once per process)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_loop, name="libvirt-events", daemon=True).start()
        _loop_started = True


def _run_loop() -> None:
    while True:
        if libvirt.virEventRunDefaultImpl() < 0:
            log.error("libvirt's event loop failed an iteration")
            time.sleep(1.0)


class RebootWaiter:
    """Set when the domain it watches has rebooted (the guest reset, or its restart done by
    libvirt after an ACPI reboot)."""

    def __init__(self) -> None:
        self._rebooted = threading.Event()

    def set(self) -> None:
        self._rebooted.set()

    def wait(self, timeout_s: float) -> bool:
        return self._rebooted.wait(timeout_s)


class DomainEvents:
    """The events the driver cares about, on whichever connection it has: subscribed again
    on each new connection (``subscribe``: libvirtd restarted and the driver reconnected),
    while the agent's listener and the reboots awaited stay as they are."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._callbacks: list[int] = []
        self._listener: tuple[asyncio.AbstractEventLoop, Listener] | None = None
        self._reboots: dict[str, list[RebootWaiter]] = {}
        self._lock = threading.Lock()

    def subscribe(self, conn: Any) -> None:
        """Subscribe to ``conn``'s lifecycle and reboot events (a blocking call), instead of
        the connection's before (a closed one: nothing more comes from it)."""
        self.unsubscribe()
        self._callbacks = [
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None
            ),
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, self._reboot, None
            ),
        ]
        self._conn = conn

    def unsubscribe(self) -> None:
        """Unsubscribe (a blocking call); a connection already gone is fine."""
        conn, self._conn = self._conn, None
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                conn.domainEventDeregisterAny(callback)
            except libvirt.libvirtError as exc:
                log.debug("could not unsubscribe from libvirt events: %s", exc)

    def stop(self) -> None:
        """No more events, and nobody to tell them to (a blocking call)."""
        self.unsubscribe()
        self._listener = None

    def listen(self, loop: asyncio.AbstractEventLoop, listener: Listener) -> None:
        """From now on, ``listener(domain name)`` runs in ``loop`` after each power change."""
        self._listener = (loop, listener)

    def expect_reboot(self, domain_name: str) -> RebootWaiter:
        """A waiter for the next reboot of ``domain_name`` (ask before causing it)."""
        waiter = RebootWaiter()
        with self._lock:
            self._reboots.setdefault(domain_name, []).append(waiter)
        return waiter

    def forget(self, domain_name: str, waiter: RebootWaiter) -> None:
        with self._lock:
            waiters = self._reboots.get(domain_name, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._reboots.pop(domain_name, None)

    # --- in libvirt's event thread --------------------------------------------------------

    def _lifecycle(self, _conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        if event not in POWER_EVENTS:
            return
        name: str = dom.name()
        if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
            self._wake(name)  # a guest that stopped and was started again has rebooted too
        listener = self._listener
        if listener is None:
            return
        loop, call = listener
        try:
            loop.call_soon_threadsafe(call, name)
        except RuntimeError:  # the agent's loop is closed: it stopped listening
            self._listener = None

    def _reboot(self, _conn: Any, dom: Any, _opaque: Any) -> None:
        self._wake(dom.name())

    def _wake(self, name: str) -> None:
        with self._lock:
            waiters = self._reboots.pop(name, [])
        for waiter in waiters:
            waiter.set()
