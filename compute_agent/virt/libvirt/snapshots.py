"""Images of a server's disk (createImage, createBackup), taken while it runs.

A running (or paused) guest keeps writing its root disk, so the image is made of a frozen
point in time: an external disk-only snapshot moves the guest's writes to a temporary
overlay (``disk.snap-<image id>``, next to the disk; quiesced through the guest agent when
one answers), ``qemu-img convert`` flattens the now frozen disk and its backing chain into a
standalone image aside in the image store, and an *active, shallow* block commit folds the
temporary overlay back into the disk, then pivots the guest onto it. Shallow: the commit
goes into the overlay's own backing file, the server's disk, never further down into the
image's base file that other servers share. A server that is not running (stopped, or
suspended to its managed save image) has a disk nobody writes: it is flattened as it is.

Everything is idempotent: a temporary overlay left by an earlier run (the agent crashed) is
committed back first, and an image file that exists is the result of an earlier run. The
image file appears whole or not at all.

libvirt's test hypervisor has no disks: there an internal snapshot is taken and deleted, and
the image is an empty file.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from compute_agent.virt.driver import DriverError
from compute_agent.virt.libvirt import disks, domain_xml

log = logging.getLogger(__name__)

#: the temporary overlays of live snapshots, next to the server's disk
OVERLAY_PREFIX = "disk.snap-"

#: how long folding a temporary overlay back into the disk may take
COMMIT_TIMEOUT_S = 600.0

_EXTERNAL_FLAGS = (
    libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
)

_ACTIVE_SHALLOW_COMMIT = (
    libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | libvirt.VIR_DOMAIN_BLOCK_COMMIT_SHALLOW
)


def write_image(dom: Any, image_id: uuid.UUID, dest: Path, *, disk: Path | None) -> int:
    """Write the image of ``dom``'s root disk ``disk`` as ``dest`` (qcow2, or raw when its
    name ends in ``.raw``) and return its size; ``disk`` None: a hypervisor without disks.
    An existing ``dest`` is the result of an earlier run and is kept as it is."""
    if disk is None:
        return _write_empty_image(dom, image_id, dest)
    fold_back(dom, disk)
    if dest.exists():
        return dest.stat().st_size
    fmt = "raw" if dest.suffix == ".raw" else "qcow2"
    if not dom.isActive():
        disks.flatten(_top_file(dom, live=False) or disk, dest, fmt)
        return dest.stat().st_size
    overlay = disk.with_name(f"{OVERLAY_PREFIX}{image_id}")
    overlay.unlink(missing_ok=True)  # unused (fold_back): libvirt creates it afresh
    _freeze_writes(dom, overlay)
    try:
        disks.flatten(disk, dest, fmt)
    finally:
        fold_back(dom, disk)
    return dest.stat().st_size


def fold_back(dom: Any, disk: Path) -> None:
    """Make the guest write ``disk`` again after an interrupted snapshot: a temporary
    overlay it writes into is committed back into ``disk`` (shallow) and the guest pivoted
    onto it; one its definition names is committed offline. Unused temporary overlays go.
    (A suspended guest's saved memory names its files: they stay as they are until it
    resumes.)"""
    if dom.isActive():
        top = _top_file(dom, live=True)
        if _is_overlay(top, disk):
            assert top is not None
            _commit_and_pivot(dom, top)
    elif not dom.hasManagedSaveImage(0):
        top = _top_file(dom, live=False)
        if _is_overlay(top, disk):
            assert top is not None
            _commit_offline(dom, top, disk)
    in_use = {_top_file(dom, live=False), _top_file(dom, live=True) if dom.isActive() else None}
    for stale in disk.parent.glob(f"{OVERLAY_PREFIX}*"):
        if stale not in in_use:
            stale.unlink(missing_ok=True)


def _is_overlay(top: Path | None, disk: Path) -> bool:
    return top is not None and top.parent == disk.parent and top.name.startswith(OVERLAY_PREFIX)


def _top_file(dom: Any, *, live: bool) -> Path | None:
    """The file the root disk's guest writes go to (live, or as defined)."""
    flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
    paths = domain_xml.disk_paths(dom.XMLDesc(flags))
    return paths[0] if paths else None


def _commit_offline(dom: Any, overlay: Path, disk: Path) -> None:
    """The stopped guest's definition names a temporary overlay: its writes go into the
    disk (its backing file, one level down only), and the definition names the disk again."""
    log.info("%s: committing %s back into its disk", dom.name(), overlay.name)
    disks.qemu_img("commit", "-q", "-f", "qcow2", str(overlay))
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    dom.connect().defineXML(domain_xml.with_root_disk(xml, disk))
    overlay.unlink(missing_ok=True)


def _freeze_writes(dom: Any, overlay: Path) -> None:
    """An external disk-only snapshot: the guest now writes ``overlay``; its disk is frozen.
    Quiesced (the guest's file systems flushed and frozen for the moment) when a guest
    agent answers; crash-consistent otherwise."""
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = overlay.name
    ET.SubElement(root, "description").text = "Stratus image: temporary overlay"
    disks_el = ET.SubElement(root, "disks")
    disk_el = ET.SubElement(
        disks_el, "disk", name=domain_xml.ROOT_TARGET, snapshot="external", type="file"
    )
    ET.SubElement(disk_el, "driver", type="qcow2")
    ET.SubElement(disk_el, "source", file=str(overlay))
    xml = ET.tostring(root, encoding="unicode")
    if domain_xml.agent_connected(dom.XMLDesc(0)):
        try:
            dom.snapshotCreateXML(xml, _EXTERNAL_FLAGS | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE)
            return
        except libvirt.libvirtError as exc:
            log.info("%s: cannot quiesce the guest (%s): snapshot without", dom.name(), exc)
    dom.snapshotCreateXML(xml, _EXTERNAL_FLAGS)


def _commit_and_pivot(dom: Any, overlay: Path) -> None:
    """Active shallow commit of ``overlay`` (the top) into its backing file, then pivot."""
    target = domain_xml.ROOT_TARGET
    log.info("%s: folding %s back into its disk", dom.name(), overlay.name)
    if not dom.blockJobInfo(target, 0):
        dom.blockCommit(target, None, None, 0, _ACTIVE_SHALLOW_COMMIT)
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    while True:
        info = dom.blockJobInfo(target, 0)
        if not info:  # the pivot is done (or the job went away): the top is the disk again
            break
        if info["cur"] == info["end"] and info["end"] > 0:  # ready: libvirt says so this way
            try:
                dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
            except libvirt.libvirtError as exc:
                log.debug("%s: pivot not possible yet (%s)", dom.name(), exc)
        if time.monotonic() > deadline:
            raise DriverError(f"folding the snapshot of {dom.name()} back took too long")
        time.sleep(0.1)
    if _top_file(dom, live=True) == overlay:
        raise DriverError(f"{dom.name()} still writes its temporary overlay {overlay}")
    overlay.unlink(missing_ok=True)


def _write_empty_image(dom: Any, image_id: uuid.UUID, dest: Path) -> int:
    """The test hypervisor's image: an internal snapshot taken and deleted, an empty file."""
    if dest.exists():
        return dest.stat().st_size
    name = f"image-{image_id}"
    snapshot = _internal_snapshot(dom, name)
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(b"")  # the test hypervisor's snapshot holds no disk data
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
        snapshot.delete(0)
    return dest.stat().st_size


def _internal_snapshot(dom: Any, name: str) -> Any:
    """The snapshot ``name`` of ``dom``, taken now unless an earlier run left it."""
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "description").text = "Stratus createImage"
    return dom.snapshotCreateXML(ET.tostring(root, encoding="unicode"), 0)
