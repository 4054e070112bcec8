"""What a server create reads before it writes, in one round trip: the flavor, the image, the
key pair it names, the project's quota overrides and whether any live host could ever take the
flavor. Each read is the one its own module makes (``flavors.get``, ``images.get``,
``keypairs.get``, ``quota_overrides.for_project``, ``hosts.could_ever_fit``); a create makes
them all, every time, and each round trip costs the gateway and PostgreSQL a send and a
receive, more than the read itself.

The image's columns are the statement's own (its metadata and fault are jsonb, whose codec
decodes only top-level columns); the flavor and the key pair arrive as anonymous records
(tuples, in the order of their dataclass's fields, the order this module selects them in),
so each is built positionally.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields

from shared.db import images
from shared.db.hosts import EverFits, Ratios
from shared.db.pool import Executor
from shared.db.records import Flavor, Image, Keypair


def _row_of(row: type, alias: str) -> str:
    """``ROW(alias.field, ...)``: the columns of ``row``'s fields, in their order."""
    return f"ROW({', '.join(f'{alias}.{field.name}' for field in fields(row))})"


#: $1 project, $2 image id (as in images.GET; NULL: no image), $3 flavor id, $4 user, $5 key
#: name (NULL: none), $6 seconds of silence after which a host is down, $7..$9 the cpu, ram
#: and disk allocation ratios.
#: ``fits``: hosts.could_ever_fit's rule (``hosts.EverFits``: a live, enabled, up host
#: holding the flavor when empty, under the ratios), with the sizes of the flavor read
#: here; NULL without a flavor.
_EVER_FITS = EverFits(
    vcpus="f.vcpus",
    ram_mb="f.ram_mb",
    disk_gb="f.disk_gb",
    cpu="$7",
    ram="$8",
    disk="$9",
    down_after_s="$6",
)
_READ = f"""
SELECT image.*,
       (SELECT {_row_of(Flavor, "f")} FROM flavors f
         WHERE f.id = $3 AND f.deleted_at IS NULL) AS flavor,
       (SELECT {_row_of(Keypair, "k")} FROM key_pairs k
         WHERE $5::text IS NOT NULL AND k.user_id = $4 AND k.name = $5) AS key,
       COALESCE((SELECT jsonb_object_agg(o.resource, o.hard_limit) FROM quota_overrides o
                  WHERE o.project_id = $1), '{{}}'::jsonb) AS overrides,
       (SELECT EXISTS (SELECT 1 FROM compute_hosts h WHERE {_EVER_FITS.predicate()})
          FROM flavors f WHERE f.id = $3 AND f.deleted_at IS NULL) AS fits
  FROM (SELECT) AS one LEFT JOIN LATERAL ({images.GET}) AS image ON true
"""


@dataclass(frozen=True)
class CreateReads:
    """What a create found: None for a flavor, image or key pair that is not there (or not
    the project's to use); ``fits`` is None when there is no flavor."""

    flavor: Flavor | None
    image: Image | None
    key: Keypair | None
    overrides: dict[str, int]
    fits: bool | None


async def read(
    conn: Executor,
    *,
    flavor_id: str,
    image_id: uuid.UUID | None,
    project_id: str,
    user_id: str,
    key_name: str | None,
    ratios: Ratios,
    down_after_s: float,
) -> CreateReads:
    """Everything a create of ``flavor_id`` from ``image_id`` reads, in one statement."""
    row = await conn.fetchrow(
        _READ,
        project_id,
        image_id,
        flavor_id,
        user_id,
        key_name,
        down_after_s,
        ratios.cpu,
        ratios.ram,
        ratios.disk,
    )
    assert row is not None  # one row always: the image is LEFT JOINed to it
    flavor, key = row["flavor"], row["key"]
    return CreateReads(
        flavor=None if flavor is None else Flavor(*flavor),
        image=None if row["id"] is None else Image.from_record(row),
        key=None if key is None else Keypair(*key),
        overrides=dict(row["overrides"]),
        fits=row["fits"],
    )
