"""The image service for a libvirt host's disk work, which runs in worker threads: each call
runs its transfer (compute_agent/image_service.py, compute_agent/image_cache.py) on the
driver's event loop and waits for it, so the disk code stays plain blocking code."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from compute_agent.image_cache import ImageCache
from shared.messages import ImageSpec

T = TypeVar("T")


class LoopRemoteImages:
    """``RemoteImages`` (compute_agent/virt/libvirt/images.py) on ``cache`` and its client."""

    def __init__(self, cache: ImageCache) -> None:
        self.cache = cache
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def bind(self) -> None:
        """Run the transfers on the running loop (the driver's: its ``init_host``)."""
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()

    def _wait(self, work: Coroutine[Any, Any, T]) -> T:
        if self._loop is None or threading.get_ident() == self._loop_thread:
            work.close()
            raise RuntimeError("the image service is reached from a worker thread only")
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def base(self, image: ImageSpec) -> Path:
        return self._wait(self.cache.ensure(image))

    def file(self, name: str) -> Path:
        return self._wait(self.cache.ensure_file(name))

    def send_disk(self, server_id: uuid.UUID, disk: Path) -> None:
        self._wait(self.cache.images.send_disk(server_id, disk))

    def receive_disk(self, server_id: uuid.UUID, target: Path) -> None:
        self._wait(self.cache.images.receive_disk(server_id, target))

    def drop_disk(self, server_id: uuid.UUID) -> None:
        self._wait(self.cache.images.drop_disk(server_id))
