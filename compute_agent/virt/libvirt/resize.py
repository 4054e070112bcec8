"""Resizes and cold migrations with libvirt: the driver's side of each step
(compute_agent/virt/driver.py), on real disks.

Source (``migrate_disk_and_power_off``): the guest is shut down (gracefully first), its
directory set aside as ``<id>_resize`` (the original, kept until the resize is confirmed, for
a revert) and the domain's definition pointed there; for another host, a copy of the disk
goes to the image store (``transfers/<id>/disk``: an overlay, whose backing file, the image's,
is in the store too, so the destination reads it where it is). On the same host nothing is
copied yet.

Destination (``finish_migration``): the disk becomes its own (copied from the store, or from
the original's directory on the same host), grows to the new flavor's size (it never
shrinks: that would cut the guest's file systems, and is refused), and the domain is
defined with the new flavor and started. Confirm: the source discards the original. Revert:
the destination destroys its copy, the source moves the original back and runs it with the
old flavor.

The store is the meeting point because every agent reads it at the same path (images.py):
two hosts need no other way to reach each other's files. With an instances directory shared
between hosts the same steps hold: the ``<id>_resize`` mark says whose the original is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import libvirt

from compute_agent.virt.driver import DriverError, server_id_of
from compute_agent.virt.libvirt import domain_xml
from compute_agent.virt.libvirt.disks import Disks
from shared.messages import InstanceSpec
from shared.states import PowerState

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Host(Protocol):
    """What of ``LibvirtDriver`` the resize steps use."""

    _host: str | None

    @property
    def _disks(self) -> Disks: ...

    def _find(self, domain_name: str) -> Any | None: ...

    def _lookup(self, domain_name: str) -> Any: ...

    def _define(self, instance: InstanceSpec) -> Any: ...

    def _destroy(self, domain_name: str) -> None: ...

    def _undefine(self, dom: Any) -> None: ...

    def _power_off(self, dom: Any) -> None: ...

    def _state(self, dom: Any) -> PowerState: ...

    def _booted(self, instance: InstanceSpec) -> None: ...

    async def _blocking(self, what: str, call: Callable[..., T], *args: Any) -> T: ...


class LibvirtResize:
    """The resize methods of ``LibvirtDriver`` (mixed into it)."""

    async def migrate_disk_and_power_off(
        self: _Host, instance: InstanceSpec, dest_host: str
    ) -> PowerState:
        return await self._blocking(
            "power the server off and hand its disk over", _migrate_disk, self, instance, dest_host
        )

    async def finish_migration(
        self: _Host, instance: InstanceSpec, *, same_host: bool
    ) -> PowerState:
        return await self._blocking("start the resized server", _finish, self, instance, same_host)

    async def confirm_migration(self: _Host, domain_name: str, *, same_host: bool) -> None:
        await self._blocking("remove the original", _confirm, self, domain_name, same_host)

    async def finish_revert_migration(self: _Host, instance: InstanceSpec) -> PowerState:
        return await self._blocking("restart the original server", _revert, self, instance)


def _migrate_disk(host: _Host, instance: InstanceSpec, dest_host: str) -> PowerState:
    """Source: off, set aside, handed over; on failure the server runs again as it was."""
    dom = host._lookup(instance.domain_name)
    files = host._disks.files(instance.server_id)
    was_running = bool(dom.isActive())
    host._power_off(dom)
    try:
        original = host._disks.stash_original(instance.server_id, hand_over=dest_host != host._host)
        if original != files.disk:
            _point_definition(dom, files.dir, original.parent)
    except (libvirt.libvirtError, DriverError):
        log.warning("handing %s over failed: running it again", instance.domain_name)
        host._disks.restore_original(instance.server_id)
        _point_definition(dom, files.resize_dir, files.dir)
        if was_running and not dom.isActive():
            dom.create()
            host._booted(instance)
        raise
    return host._state(dom)


def _point_definition(dom: Any, old_dir: Path, new_dir: Path) -> None:
    """The domain's (inactive) definition with its files in ``new_dir`` instead."""
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    moved = domain_xml.relocate(xml, old_dir, new_dir)
    if moved != xml:
        dom.connect().defineXML(moved)


def _runs_as(host: _Host, dom: Any | None, instance: InstanceSpec) -> bool:
    """Does the domain run with ``instance``'s flavor, on the server's own disk?"""
    if dom is None or not dom.isActive():
        return False
    xml = dom.XMLDesc(0)
    disks = domain_xml.disk_paths(xml)[:1]
    own_disk = [host._disks.files(instance.server_id).disk]
    return domain_xml.flavor_id(xml) == instance.flavor.id and disks == own_disk


def _finish(host: _Host, instance: InstanceSpec, same_host: bool) -> PowerState:
    """Destination: the disk taken over, the domain defined with the new flavor, started.
    On another host a failure leaves nothing; on the same one the original stays for the
    rollback (``_revert``)."""
    dom = host._find(instance.domain_name)
    if _runs_as(host, dom, instance):
        return host._state(dom)
    try:
        if dom is not None and dom.isActive():
            dom.destroy()
        host._disks.take_over(instance, same_host=same_host)
        dom = host._define(instance)
        dom.create()
        host._booted(instance)
    except (libvirt.libvirtError, DriverError):
        if not same_host:
            host._destroy(instance.domain_name)
        raise
    return host._state(dom)


def _confirm(host: _Host, domain_name: str, same_host: bool) -> None:
    """Source: the original goes (on the same host the definition was replaced in place and
    only its files are left; on another host its definition goes too)."""
    dom = host._find(domain_name)
    if not same_host and dom is not None:
        host._undefine(dom)
    server_id = server_id_of(domain_name)
    if server_id is not None:
        host._disks.discard_original(server_id)


def _revert(host: _Host, instance: InstanceSpec) -> PowerState:
    """Source: the original's files back in place, the domain defined with the old flavor
    and started (once: a domain running so already is left alone)."""
    dom = host._find(instance.domain_name)
    set_aside = host._disks.files(instance.server_id).resize_dir.exists()
    if _runs_as(host, dom, instance) and not set_aside:
        return host._state(dom)
    if dom is not None and dom.isActive():
        dom.destroy()
    host._disks.restore_original(instance.server_id)
    dom = host._define(instance)
    dom.create()
    host._booted(instance)
    return host._state(dom)
