"""Request bodies of the admin actions of chapter 3 (guide 3.1, Tables 3.1 and 3.3).

The XML samples put parameters in child elements, which arrive as text (``"1"``,
``"active"``): ``rotation`` is turned into an integer here, as the JSON form gives it. The
actions without parameters (pause, lock, ...) take ``null``, ``<pause/>`` or any value but an
object with members (server_actions.no_arguments). A member nova v2.1's schema of the action
does not allow is 400 naming it, in nova v2.1's words; other faults carry nova 2013.1's
messages.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api_gateway.http.faults import BadRequest
from api_gateway.schemas.common import Boolean, validate
from api_gateway.schemas.servers import MetaKey, MetaValue, Name
from shared.states import VmState

#: Members createBackup requires, in the order they are checked (Table 3.1).
_BACKUP_MEMBERS = ("name", "backup_type", "rotation")
#: The largest rotation the database keeps (an integer column).
_MAX_ROTATION = 2**31 - 1


class CreateBackup(BaseModel):
    """Table 3.1, plus the optional ``metadata`` (image properties, as createImage's): nova
    v2.1's members, and no others."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    backup_type: Name
    rotation: int
    metadata: dict[MetaKey, MetaValue] = {}


def create_backup(value: Any) -> CreateBackup:
    """``value`` (the object under ``createBackup``) as a CreateBackup, or 400."""
    if not isinstance(value, dict):
        raise BadRequest("Malformed createBackup entity")
    for member in _BACKUP_MEMBERS:
        if member not in value:
            raise BadRequest(f"createBackup entity requires {member} attribute")
    return validate(CreateBackup, {**value, "rotation": _rotation(value["rotation"])})


def _rotation(value: object) -> int:
    """An integer of at least 0, given as a JSON integer or as text (XML)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest("createBackup attribute 'rotation' must be an integer")
    try:
        rotation = int(value)
    except ValueError:
        raise BadRequest("createBackup attribute 'rotation' must be an integer") from None
    if rotation < 0:
        raise BadRequest("createBackup attribute 'rotation' must be greater than or equal to zero")
    if rotation > _MAX_ROTATION:
        raise BadRequest(f"createBackup attribute 'rotation' must be at most {_MAX_ROTATION}")
    return rotation


#: The states os-resetState may force (Table 3.3), by the value a request names.
_RESET_STATES = {"active": VmState.ACTIVE, "error": VmState.ERROR}


class _ResetStateMembers(BaseModel):
    """os-resetState's one member, ``state`` (checked by ``reset_state``), and no other."""

    model_config = ConfigDict(extra="forbid")

    state: Any = None


def reset_state(value: Any) -> VmState:
    """The vm_state ``{"state": ...}`` asks for, or 400 (lower case only, as nova); a member
    beside ``state`` is 400 naming it."""
    if isinstance(value, dict):
        validate(_ResetStateMembers, value)
    state = value.get("state") if isinstance(value, dict) else None
    if not isinstance(state, str) or state not in _RESET_STATES:
        valid = ", ".join(sorted(_RESET_STATES))
        raise BadRequest(f"Desired state must be specified.  Valid states are: {valid}")
    return _RESET_STATES[state]


class _MigrateMembers(BaseModel):
    """migrate's value as an object: only nova 2.56's ``host`` (checked by ``migrate``)."""

    model_config = ConfigDict(extra="forbid")

    host: Any = None


def migrate(value: Any) -> None:
    """migrate takes no parameters (``null``, ``<migrate/>``), as nova v2.1 without
    microversions. openstacksdk sends ``{"host": ...}`` only when asked for a destination,
    which Stratus does not take: 400 rather than a migration elsewhere; ``host: null`` is
    the same as none. Any other member is 400 naming it."""
    if not isinstance(value, dict):
        return
    validate(_MigrateMembers, value)
    if value.get("host") is not None:
        raise BadRequest(
            "Invalid input for field/attribute host. migrate takes no destination host"
            " (microversion 2.56); leave host out and the scheduler picks one."
        )


class Evacuate(BaseModel):
    """nova's os-evacuate (2013.1): where to rebuild a server whose host is gone.

    ``host`` may be left out or ``null`` (nova 2.29's rule, which ``openstack server
    evacuate`` relies on): the conductor's scheduler then picks one; nova 2013.1 required it.
    ``onSharedStorage`` is taken (2013.1 required it; clients send it) and changes nothing:
    instance disks are never on shared storage here, so every evacuation rebuilds the server
    from its image, with a new password (``adminPass``, or one generated).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str | None = Field(default=None, min_length=1, max_length=255)
    on_shared_storage: Boolean = Field(default=False, alias="onSharedStorage")
    admin_pass: str | None = Field(default=None, alias="adminPass", min_length=1)


def evacuate(value: Any) -> Evacuate:
    """``value`` (the object under ``evacuate``) as an Evacuate, or 400; an empty body
    (``null``, ``<evacuate/>``) leaves everything to the scheduler. A member nova v2.1's
    schema does not allow is 400 naming it."""
    if value is None:
        return Evacuate()
    if not isinstance(value, dict):
        raise BadRequest("Malformed request body")
    if value.get("host") == "":
        raise BadRequest("Invalid input for field/attribute host. '' is too short")
    return validate(Evacuate, value)
