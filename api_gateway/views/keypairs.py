"""Key pairs as nova 2013.1's os-keypairs showed them (samples/nova-2013.1/os-keypairs).

JSON: ``{"keypair": {...}}``, and ``{"keypairs": [{"keypair": {...}}]}`` for the list (each
item wrapped, as nova had it). XML: nova's flat form, members as text elements, in no
namespace (``<keypairs><keypair><public_key>…</public_key>…</keypair></keypairs>``).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from api_gateway.http.serializers import xml
from shared.db.records import Keypair


def listed(row: Keypair) -> dict[str, Any]:
    """What the list gives: no user, no private key."""
    return {"name": row.name, "public_key": row.public_key, "fingerprint": row.fingerprint}


def shown(row: Keypair) -> dict[str, Any]:
    """What the show gives: nova 2013.1 answered the key pair's database record, so with its
    user and bookkeeping members, which tempest's v2.1 ``get_keypair`` schema requires (and
    openstacksdk reads ``user_id``, ``created_at`` and ``deleted``). A key pair is never
    updated and is gone once deleted: ``updated_at`` and ``deleted_at`` are null,
    ``deleted`` false. nova's ``id`` was its row number; Stratus keys key pairs by user and
    name (migration 0012) and has none to show. ``created_at`` is written as nova wrote its
    records' times (UTC, microseconds, no zone)."""
    created = row.created_at.astimezone(UTC).replace(tzinfo=None)
    return {
        **listed(row),
        "user_id": row.user_id,
        "created_at": created.isoformat(timespec="microseconds"),
        "updated_at": None,
        "deleted_at": None,
        "deleted": False,
    }


def created(row: Keypair, private_key: str | None = None) -> dict[str, Any]:
    """What a create answers: the stored key pair, its user, and a generated private key."""
    body = {**listed(row), "user_id": row.user_id}
    if private_key is not None:
        body["private_key"] = private_key
    return body


def keypairs_xml(items: list[dict[str, Any]]) -> bytes:
    inner = "".join(xml.flat("keypair", entry["keypair"]) for entry in items)
    return xml.flat_document(f"<keypairs>{inner}</keypairs>")


def keypair_xml(value: dict[str, Any]) -> bytes:
    return xml.flat_document(xml.flat("keypair", value))
