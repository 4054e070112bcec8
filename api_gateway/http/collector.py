"""Short pauses of Python's cyclic garbage collector on a serving gateway.

A request leaves reference cycles behind (aiohttp's request and response objects among
them), so the collector runs while the gateway serves; every so often a full collection
walks every object the process holds. Most of those were made at startup (modules, routes,
pydantic's validators, the conductor's and agents' in ``stratus up``: some 76,000 objects)
and live as long as the process, yet each full collection walked them all: 100 to 170 ms
during which the event loop answered nothing, about once per thousand requests, the p99 of a
loaded gateway. Frozen once the application has started (``gc.freeze``), they are left out
of every collection; what requests make is still collected as before.
"""

from __future__ import annotations

import gc

from aiohttp import web


async def freeze_startup_objects(app: web.Application) -> None:
    """Leave what exists once the application has started out of future collections
    (``on_startup``, after the application's resources are open)."""
    gc.freeze()


async def unfreeze(app: web.Application) -> None:
    """Give the frozen objects back to the collector (``on_cleanup``): a process that starts
    applications one after another (the tests) collects each one's garbage once it stops."""
    gc.unfreeze()
