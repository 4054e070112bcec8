"""Server representations (Ex 2.1–2.12, 1.48/1.49), with the members of the extended status
and extended server attributes extensions where the caller may see them."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from api_gateway.views.links import isotime, resource_links
from shared.db.records import Server, ServerEntry
from shared.rpcapi import domain_name
from shared.states import Status, v2_status

#: Statuses that carry ``progress`` (the reference implementation's choice).
_WITH_PROGRESS = {Status.ACTIVE, Status.BUILD, Status.REBUILD, Status.RESIZE, Status.VERIFY_RESIZE}


@functools.lru_cache(maxsize=65536)
def host_id(tenant_id: str, host: str | None) -> str:
    """Opaque id of a server's host, equal for one tenant's servers on one host only."""
    if not host:
        return ""
    return hashlib.sha224(f"{tenant_id}{host}".encode()).hexdigest()


def basic(row: Server | ServerEntry, base: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "links": resource_links(base, tenant_id, "servers", row.id),
    }


def addresses(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    networks: dict[str, list[dict[str, Any]]] = {}
    for address in rows:
        networks.setdefault(address["network"], []).append(
            {"version": address["version"], "addr": address["addr"]}
        )
    return networks


@dataclass(frozen=True)
class Extended:
    """Which extensions' members a detailed representation carries (the policy decides,
    per caller); also part of the render cache's key, as the representations differ."""

    #: ``OS-EXT-STS``: vm_state, task_state, power_state
    status: bool = True
    #: ``OS-EXT-SRV-ATTR``: host, hypervisor_hostname, instance_name (administrators)
    server_attributes: bool = False
    #: ``os-keypairs``: key_name (null when the server has no key, as nova shows it)
    key_name: bool = True
    #: ``os-config-drive``: config_drive ("True" when the create asked for one, else "")
    config_drive: bool = True


#: No extension members: the answers of update and rebuild, whose published schemas allow
#: none (nova decorated only show and detail with them).
UNDECORATED = Extended(status=False, server_attributes=False, key_name=False, config_drive=False)


def extended_status(row: Server) -> dict[str, Any]:
    """The three states of a server (nova's extended_status): ``task_state`` is null when no
    task runs, ``power_state`` the hypervisor's number."""
    return {
        "OS-EXT-STS:vm_state": row.vm_state,
        "OS-EXT-STS:task_state": row.task_state,
        "OS-EXT-STS:power_state": row.power_state,
    }


def extended_server_attributes(row: Server) -> dict[str, Any]:
    """Where the server runs: its host (also the hypervisor's name: one hypervisor per
    host) and the name of its domain there."""
    return {
        "OS-EXT-SRV-ATTR:host": row.host,
        "OS-EXT-SRV-ATTR:hypervisor_hostname": row.host,
        "OS-EXT-SRV-ATTR:instance_name": domain_name(row.id),
    }


def detail(
    row: Server, base: str, tenant_id: str, extended: Extended = Extended()
) -> dict[str, Any]:
    status = v2_status(row.vm_state, row.task_state)
    server: dict[str, Any] = {
        "id": str(row.id),
        "name": row.name,
        "tenant_id": row.tenant_id,
        "user_id": row.user_id,
        "status": status.value,
        "created": isotime(row.created_at),
        "updated": isotime(row.updated_at),
        "hostId": host_id(row.tenant_id, row.host),
        "accessIPv4": row.access_ipv4,
        "accessIPv6": row.access_ipv6,
        "image": {
            "id": str(row.image_id),
            "links": resource_links(base, tenant_id, "images", row.image_id),
        },
        "flavor": {
            "id": row.flavor_id,
            "links": resource_links(base, tenant_id, "flavors", row.flavor_id),
        },
        "metadata": row.metadata,
        "addresses": addresses(row.addresses),
        "links": resource_links(base, tenant_id, "servers", row.id),
    }
    if status in _WITH_PROGRESS:
        server["progress"] = row.progress
    if status is Status.ERROR and row.fault is not None:
        # ``details`` is optional; an empty one would be an empty element in XML
        server["fault"] = {k: v for k, v in row.fault.items() if k != "details" or v}
    if extended.key_name:
        server["key_name"] = row.key_name
    if extended.config_drive:
        server["config_drive"] = "True" if row.config_drive else ""
    if extended.status:
        server.update(extended_status(row))
    if extended.server_attributes:
        server.update(extended_server_attributes(row))
    return server


def created(server_id: object, admin_pass: str, base: str, tenant_id: str) -> dict[str, Any]:
    """The 202 body of a create: id, links and the only sight of the password (Ex 2.4)."""
    return {
        "id": str(server_id),
        "links": resource_links(base, tenant_id, "servers", server_id),
        "adminPass": admin_pass,
    }
