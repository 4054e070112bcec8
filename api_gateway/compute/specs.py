"""The specs an agent needs, from what the database holds now (shared/rpcapi.py builds them
from the rows read here)."""

from __future__ import annotations

from shared import rpcapi
from shared.db import flavors, images
from shared.db.pool import Executor
from shared.db.records import Image, Server
from shared.messages import InstanceSpec


async def instance_spec(
    conn: Executor, server: Server, *, image: Image | None = None
) -> InstanceSpec:
    """What an agent needs to (re)build ``server`` (a full row): its flavor as the server
    holds it, and ``image`` or the one it was built from."""
    flavor = await flavors.get(conn, server.flavor_id)
    image = image or await images.get_any(conn, server.image_id)
    return rpcapi.instance_spec(server, flavor, image)
