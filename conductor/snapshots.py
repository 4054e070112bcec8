"""createImage, as the conductor sees it: the host's report finishes the image row.

The agent never writes the database; it reports where in the image store the snapshot is
(written there itself, or stored through the image API, which also gave its MD5 and SHA-512)
and how big it is. The image becomes ACTIVE (or ERROR, ``killed``, with the fault),
and the server ends its task in the vm_state it had (a snapshot changes nothing about it; a
failure is recorded as a fault but the server keeps running). An active image boots as the
server's image did: it inherits that image's ``kernel``, ``initrd`` and ``cmdline`` metadata.
"""

from __future__ import annotations

import logging

from shared.db import images, servers
from shared.db.pool import Conn
from shared.db.records import LockedServer
from shared.messages import CommandReport, Fault

log = logging.getLogger(__name__)


async def apply_report(conn: Conn, row: LockedServer, report: CommandReport) -> None:
    """Apply a legal ``image_snapshot`` report (judged by conductor/legality.py)."""
    result = report.snapshot
    await servers.advance(conn, row.id, task=None, power_state=report.power_state)
    if result is None:
        log.error("snapshot report for server %s names no image", row.id)
        return
    if report.success and result.location is not None:
        if await images.finish_snapshot(
            conn,
            result.image_id,
            location=result.location,
            size_bytes=result.size_bytes or 0,
            checksum=result.checksum,
            os_hash_value=result.os_hash_value,
        ):
            await images.inherit_boot_metadata(conn, result.image_id, row.id)
            log.info("image %s of server %s is active", result.image_id, row.id)
        else:
            log.info("image %s was deleted while it was being saved", result.image_id)
        return
    fault = report.fault or Fault(message=f"the snapshot failed on {report.host}")
    await images.set_fault(conn, result.image_id, fault)
    await servers.add_fault(conn, row.id, fault)
