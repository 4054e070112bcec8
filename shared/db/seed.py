"""The data every new deployment starts with: the classic flavors and a base image.

Applied by ``stratus db upgrade`` and ``stratus up``; idempotent, and it never overwrites what
an operator changed.
"""

from __future__ import annotations

import uuid

from shared.db.pool import Conn

#: (id, name, RAM MB, disk GB, vCPUs): the reference implementation's default flavors.
DEFAULT_FLAVORS = [
    ("1", "m1.tiny", 512, 1, 1),
    ("2", "m1.small", 2048, 20, 1),
    ("3", "m1.medium", 4096, 40, 2),
    ("4", "m1.large", 8192, 80, 4),
    ("5", "m1.xlarge", 16384, 160, 8),
]

_IMAGE_NAMESPACE = uuid.UUID("6d1c3c3e-4f0e-4e55-9b43-0e6f5ad5f0a1")


def image_id(name: str) -> uuid.UUID:
    """Seeded images get stable ids, so examples and scripts can name them."""
    return uuid.uuid5(_IMAGE_NAMESPACE, name)


#: (name, min disk GB, min RAM MB)
DEFAULT_IMAGES = [
    ("cirros-0.6.2-x86_64", 0, 0),
    ("debian-12-genericcloud-amd64", 2, 256),
]


async def seed_defaults(conn: Conn) -> None:
    await conn.executemany(
        """INSERT INTO flavors (id, name, ram_mb, disk_gb, vcpus) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING""",
        DEFAULT_FLAVORS,
    )
    await conn.executemany(
        """INSERT INTO images (id, name, status, progress, is_public, min_disk_gb, min_ram_mb)
           VALUES ($1, $2, 'active', 100, true, $3, $4)
           ON CONFLICT DO NOTHING""",
        [(image_id(name), name, disk, ram) for name, disk, ram in DEFAULT_IMAGES],
    )
