"""The tokens a gateway has validated, so that most requests never wait for Keystone.

Bounded (least recently used entries go first) and keyed by a digest of the token, so the
tokens themselves are not kept. An entry remembers Keystone's verdict, valid (with what the
token says) or not, and when Keystone gave it: the strategy decides from that whether the
verdict still holds, may be asked again, or must be (api_gateway/auth/keystone.py).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from api_gateway.auth.keystone_client import TokenInfo


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """Keystone's answer for one token: ``info`` when valid, None when not; ``checked_at``
    on the cache's (monotonic) clock."""

    info: TokenInfo | None
    checked_at: float


class TokenCache:
    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, Verdict] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Verdict | None:
        verdict = self._entries.get(key)
        if verdict is not None:
            self._entries.move_to_end(key)
        return verdict

    def put(self, key: str, info: TokenInfo | None) -> Verdict:
        verdict = Verdict(info, self.clock())
        self._entries[key] = verdict
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return verdict

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def age(self, verdict: Verdict) -> float:
        """Seconds since Keystone gave ``verdict``."""
        return self.clock() - verdict.checked_at
