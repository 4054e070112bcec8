"""Rendered representations, reused while what they show is unchanged.

A server's row carries a ``version`` that a database trigger bumps on every change to the row
or its children (metadata, addresses, faults), so (server id, version) plus everything else a
representation depends on (base URL, project, format) names its bytes exactly: an entry can
never be stale, only unused. Listing a page then costs one small index query and, for the
servers that changed, one fetch; the rest is joining bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class RenderCache:
    """A bounded least-recently-used map from a representation's key to its bytes."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()

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
