"""The specs an agent needs, from what the database holds now (shared/rpcapi.py builds them
from the rows read here)."""

from __future__ import annotations

from collections.abc import Sequence

from api_gateway.schemas.servers import PersonalityFile
from shared import rpcapi
from shared.db import flavors, images, servers
from shared.db.pool import Executor
from shared.db.records import Image, Server
from shared.messages import InjectedFile, InstanceSpec


async def instance_spec(
    conn: Executor, server: Server, *, image: Image | None = None
) -> InstanceSpec:
    """What an agent needs to (re)build ``server`` (a full row): its flavor as the server
    holds it, ``image`` or the one it was built from, and what its config drive delivers."""
    flavor = await flavors.get(conn, server.flavor_id)
    image = image or await images.get_any(conn, server.image_id)
    guest = await servers.guest_data(conn, server.id)
    return rpcapi.instance_spec(server, flavor, image, guest)


def injected_files(personality: Sequence[PersonalityFile]) -> tuple[InjectedFile, ...]:
    """A request's personality as the server keeps it for its config drive."""
    return tuple(InjectedFile(path=f.path, contents=f.contents) for f in personality)
