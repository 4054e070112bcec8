"""A network partition between one role and one dependency, without iptables.

The issue asks for a role in a network namespace of its own whose traffic is dropped. That
needs root, ``ip netns`` and iptables on the machine running the suite, and leaves rules
behind when a run is killed. What a partition does to the application can be had portably:
the role reaches its dependency through ``Blackhole``, a TCP proxy in the test process,
and cutting the proxy is what dropped packets look like from either end:

* nothing arrives any more, in either direction, and nobody closes anything: no FIN, no
  RST; a writer's bytes are taken (as the kernel takes them into its send buffer) and lost.
  An application only notices through its own heartbeats and timeouts;
* a new connection is accepted but nothing goes through it (a SYN with no answer would
  make the client wait the same way: it must give up on its own);
* restoring forwards again. A connection that lost bytes while cut cannot go on (TCP never
  delivers a stream with a hole: either it retransmits and the stream continues, or a peer
  gave up on it, and the first segment after the partition is answered with a reset), so
  the proxy resets it on restore and the application must reconnect; a connection that
  had nothing to say meanwhile carries on, as it would.

The proxy runs its own event loop in a thread of its own: a test that blocks its loop for a
moment (waiting for a killed process, say) must not cut the cluster's traffic by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

_CHUNK = 65536
#: How long cut/restore/close wait for the proxy's loop to carry them out.
_CONTROL_TIMEOUT_S = 10.0


@dataclass(eq=False)
class _Link:
    """One client connection and its connection to the dependency."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    #: bytes were dropped (or the connection was made) while cut: it cannot go on
    broken: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class Blackhole:
    """Forwards 127.0.0.1:``port`` to ``upstream_host``:``upstream_port`` until cut."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cut = False
        #: set while not cut (only touched on the proxy's loop)
        self._healed = asyncio.Event()
        self._healed.set()
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"blackhole:{self.port}", daemon=True
        )
        #: how many connections the last ``restore`` reset
        self.reset_on_restore = 0

    @classmethod
    def in_front_of(cls, url: str) -> Blackhole:
        """A proxy to the host and port of ``url`` (amqp://, postgresql://)."""
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        return cls(parts.hostname, parts.port)

    def route(self, url: str) -> str:
        """``url`` with its port replaced by the proxy's: the URL a role is given."""
        parts = urlsplit(url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def is_cut(self) -> bool:
        return self._cut

    # --- control, from any thread ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._call(self._serve())

    def cut(self) -> None:
        """Drop everything from now on, both ways; close nothing."""
        self._call(self._set_cut())

    def restore(self) -> None:
        """Forward again; reset the connections that lost bytes while cut."""
        self.reset_on_restore = self._call(self._restore())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(TimeoutError):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CONTROL_TIMEOUT_S)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CONTROL_TIMEOUT_S)

    # --- on the proxy's loop -----------------------------------------------------------------

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self._listener)

    async def _set_cut(self) -> None:
        self._cut = True
        self._healed.clear()

    async def _restore(self) -> int:
        self._cut = False
        self._healed.set()
        broken = [link for link in self._links if link.broken]
        for link in broken:
            link.abort()
        return len(broken)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [task for link in self._links for task in link.tasks]
        for link in list(self._links):
            link.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.1)  # the links' own tasks see their pumps end and let go

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer, broken=self._cut)
        self._links.add(link)
        try:
            if self._cut:
                # a SYN nobody answers: the client waits, and whatever it sends is lost
                link.tasks = [asyncio.create_task(self._pump(link, reader, None))]
                await asyncio.wait(link.tasks)
                return
            try:
                up_reader, link.upstream = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                return  # the dependency is down: the client sees its connection closed
            link.tasks = [
                asyncio.create_task(self._pump(link, reader, link.upstream)),
                asyncio.create_task(self._pump(link, up_reader, writer)),
            ]
            # either side closing ends the link (neither protocol half-closes)
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in link.tasks:
                task.cancel()
            if link.broken:
                link.abort()
            else:
                self._close(link)
            self._links.discard(link)

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None
    ) -> None:
        """Copy ``reader`` to ``writer`` while not cut; drop what comes while cut. A close
        seen while cut is not passed on until the partition heals (its FIN is lost too)."""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(_CHUNK):
                if self._cut or writer is None:
                    link.broken = True
                    continue
                writer.write(data)
                await writer.drain()
        await self._healed.wait()

    @staticmethod
    def _close(link: _Link) -> None:
        for writer in (link.client, link.upstream):
            if writer is not None:
                writer.close()
