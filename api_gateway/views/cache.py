"""Rendered representations, reused while what they show is unchanged.

A server's row carries a ``version`` that a database trigger bumps on every change to the row
or its children (metadata, addresses, faults), so (server id, version) plus everything else a
representation depends on (base URL, project, format) names its bytes exactly: an entry can
never be stale, only unused. Listing a page then costs one small index query and, for the
servers that changed, one fetch; the rest is joining bytes.

Whole pages are kept too (``RenderCache.pages``), named the same way by the page's entries
(the ids and versions of the rows the page query returned, packed in two ``bytes``) and the
request's path and query string: a page whose servers are all unchanged is then one lookup
instead of one per server (a hundred lookups and the joining cost about as much as the rest
of such a request).

The one query such a page still costs is shared by the requests for it that arrive together
(``RenderCache.page_checks``, a ``Coalescer``): a request shares a query started after it
arrived, never an earlier one, so under load a page costs a round trip per round of
requests, not per request, and none misses a write acknowledged before it was sent.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from shared.db.servers import PageVersions

V = TypeVar("V")

#: Bytes of whole pages a cache keeps per entry it keeps: a page is the joined entries of its
#: servers (about 1.2 KB each in JSON), so pages get a budget of the order of the entries'.
PAGE_BYTES_PER_ENTRY = 1024


class RenderCache:
    """A bounded least-recently-used map from a representation's key to its bytes, and the
    pages joined from such representations (``pages``)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self.pages = PageCache(max(0, max_entries) * PAGE_BYTES_PER_ENTRY)
        #: the pages' validations (``servers.page_versions``), shared by concurrent requests
        self.page_checks: Coalescer[PageVersions] = Coalescer()

    def get(self, key: Hashable) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        if self.max_entries <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class PageCache:
    """A least-recently-used map from a page's key to its bytes, bounded by their total size
    (pages range from a few bytes to a megabyte: a count would bound nothing)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._pages: OrderedDict[Hashable, bytes] = OrderedDict()

    def get(self, key: Hashable) -> bytes | None:
        value = self._pages.get(key)
        if value is not None:
            self._pages.move_to_end(key)
        return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return  # also when the cache is off (no bytes)
        previous = self._pages.pop(key, None)
        if previous is not None:
            self.size -= len(previous)
        self._pages[key] = value
        self.size += len(value)
        while self.size > self.max_bytes:
            _, evicted = self._pages.popitem(last=False)
            self.size -= len(evicted)

    def __len__(self) -> int:
        return len(self._pages)


class Coalescer(Generic[V]):
    """One round trip for the concurrent requests that ask the same question of the database.

    A request joins the next round of its key, never one already started: a round started
    before the request arrived may have read the database before a write the client saw
    acknowledged, and its answer could then be stale for this client. A round starts when
    its key has none running, so a hot key has at most one round running and one gathering
    requests; under load a round answers all the requests that came during the previous one.
    The rounds run as tasks of their own: a waiter that is cancelled cancels nobody else's.
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[V]] = {}
        self._gathering: dict[Hashable, asyncio.Future[V]] = {}

    async def run(self, key: Hashable, fetch: Callable[[], Awaitable[V]]) -> V:
        """``fetch()``'s answer, from a round started after this call (``key`` must name
        everything ``fetch``'s answer depends on: the requests of one key share it)."""
        running = self._running.get(key)
        if running is None:
            return await asyncio.shield(self._start(key, fetch))
        gathering = self._gathering.get(key)
        if gathering is None:
            gathering = running.get_loop().create_future()
            self._gathering[key] = gathering
            running.add_done_callback(lambda _: self._next_round(key, fetch, gathering))
        return await asyncio.shield(gathering)

    def _start(self, key: Hashable, fetch: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        round_ = asyncio.ensure_future(fetch())
        self._running[key] = round_
        round_.add_done_callback(lambda _: self._finished(key, round_))
        return round_

    def _finished(self, key: Hashable, round_: asyncio.Future[V]) -> None:
        if self._running.get(key) is round_:
            del self._running[key]

    def _next_round(
        self, key: Hashable, fetch: Callable[[], Awaitable[V]], gathering: asyncio.Future[V]
    ) -> None:
        """Start the gathered requests' round (the previous one has just finished). A
        callback's exception would reach no request: it fails the round instead, or its
        requests would wait forever."""
        del self._gathering[key]
        try:
            round_ = self._start(key, fetch)
        except Exception as exc:
            gathering.set_exception(exc)
            return
        round_.add_done_callback(lambda done: _settle(gathering, done))

    def __len__(self) -> int:
        """Rounds running or gathering (none once the requests are answered)."""
        return len(self._running) + len(self._gathering)


def _settle(target: asyncio.Future[V], source: asyncio.Future[V]) -> None:
    """Give ``target`` the outcome of ``source``."""
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())
