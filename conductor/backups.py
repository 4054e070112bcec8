"""createBackup, as the conductor sees it: a snapshot whose report also rotates the backups.

The host writes the image exactly as for createImage and reports it (task ``image_backup``);
the image is finished as a snapshot's is (conductor/snapshots.py). Once it is ACTIVE, the
server's backups of the same type beyond the rotation the user asked for (recorded with the
image when the backup was accepted, never taken from the host) are deleted, oldest first.
"""

from __future__ import annotations

import logging

from conductor import snapshots
from shared.db import images
from shared.db.pool import Conn
from shared.db.records import LockedServer
from shared.messages import CommandReport

log = logging.getLogger(__name__)


async def apply_report(conn: Conn, row: LockedServer, report: CommandReport) -> None:
    """Apply a legal ``image_backup`` report (judged by conductor/legality.py)."""
    await snapshots.apply_report(conn, row, report)
    result = report.snapshot
    if not report.success or result is None or result.location is None:
        return  # a failed backup deletes nothing
    for image_id in await images.rotate_backups(conn, result.image_id):
        log.info("backup %s of server %s deleted by rotation", image_id, row.id)
