"""Rendered representations, reused while what they show is unchanged.

A server's row carries a ``version`` that a database trigger bumps on every change to the row
or its children (metadata, addresses, faults), so (server id, version) plus everything else a
representation depends on (base URL, project, format) names its bytes exactly: an entry can
never be stale, only unused. Listing a page then costs one small index query and, for the
servers that changed, one fetch; the rest is joining bytes.

Whole pages are kept too (``RenderCache.pages``), named the same way by the page's entries
(id, name, version of each row the page query returned) and the request's path and query
string: a page whose servers are all unchanged is then one lookup instead of one per server
(a hundred lookups and the joining cost about as much as the rest of such a request).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

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
