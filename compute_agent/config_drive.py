"""The config drive: how personality files, the key pair and user data reach a guest.

Nova's layout, so that the guests that read nova's drives read ours unchanged: an ISO 9660
image (Rock Ridge and Joliet names) labelled ``config-2``, with
``openstack/<version>/meta_data.json`` (the server's uuid, name, hostname, ``public_keys``,
``meta``, and the ``files`` index), ``openstack/<version>/user_data``,
``openstack/content/NNNN`` (each personality file, decoded) and the EC2 flavour of the same
(``ec2/latest/meta-data.json``, ``ec2/latest/user-data``). cloud-init's ConfigDrive
datasource reads it, and so does the test guest (deploy/guest/README.md).

Everything on it comes from the ``InstanceSpec`` (its ``guest`` data is kept with the
server), so any host that defines the server builds the same drive: the drive is made again
by a rebuild, and on a migration's destination, instead of being carried along. It is
written whole or not at all (a temporary file renamed), so a domain never reads half a drive.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

import pycdlib

from shared.messages import InstanceSpec

#: the label guests look for (nova's, and cloud-init's)
LABEL = "config-2"
#: the drive's name in the server's instance directory (nova's)
FILE_NAME = "disk.config"
#: the metadata versions written, each a copy of the same files: nova 2013.1's newest
#: (which cloud-init of that time looks for) and ``latest``
VERSIONS = ("2013-04-04", "latest")
#: the availability zone every server is in (nova's default, os-availability-zone)
AVAILABILITY_ZONE = "nova"


def hostname(name: str, server_id: uuid.UUID) -> str:
    """The guest's hostname from the server's name, as nova's ``sanitize_hostname`` made it:
    spaces and underscores become dashes, other characters that a hostname cannot hold go,
    lowercase, at most 63 characters; a name with nothing left gives ``server-<uuid>``."""
    host = re.sub(r"[ _]", "-", name)
    host = re.sub(r"[^a-zA-Z0-9.-]+", "", host).lower()[:63].strip(".-")
    return host or f"server-{server_id}"


def _decoded(text: str) -> bytes:
    """base64 as requests carry it (the gateway validated it; whitespace is allowed)."""
    return base64.b64decode("".join(text.split()))


def _public_keys(instance: InstanceSpec) -> dict[str, str]:
    guest = instance.guest
    if guest.key_name is None or guest.key_data is None:
        return {}
    return {guest.key_name: guest.key_data}


def meta_data(instance: InstanceSpec) -> dict[str, object]:
    """``openstack/<version>/meta_data.json``."""
    keys = _public_keys(instance)
    data: dict[str, object] = {
        "uuid": str(instance.server_id),
        "name": instance.name,
        "hostname": hostname(instance.name, instance.server_id),
        "launch_index": instance.guest.launch_index,
        "availability_zone": AVAILABILITY_ZONE,
        "project_id": instance.guest.project_id,
        "meta": dict(instance.metadata),
        "public_keys": keys,
        "keys": [{"name": name, "type": "ssh", "data": key} for name, key in keys.items()],
        "files": [
            {"path": injected.path, "content_path": f"/content/{index:04d}"}
            for index, injected in enumerate(instance.guest.files)
        ],
        "random_seed": base64.b64encode(os.urandom(512)).decode(),
        "devices": [],
    }
    return data


def ec2_meta_data(instance: InstanceSpec) -> dict[str, object]:
    """``ec2/latest/meta-data.json``: the part of nova's EC2 metadata a drive can know."""
    name = hostname(instance.name, instance.server_id)
    keys = _public_keys(instance)
    return {
        "ami-id": f"ami-{instance.image.id.hex[:8]}",
        "ami-launch-index": instance.guest.launch_index,
        "hostname": name,
        "local-hostname": name,
        "instance-id": f"i-{instance.server_id.hex[:8]}",
        "instance-type": instance.flavor.name,
        "placement": {"availability-zone": AVAILABILITY_ZONE},
        "reservation-id": instance.guest.reservation_id or "",
        "public-keys": {
            str(index): {"openssh-key": key} for index, key in enumerate(keys.values())
        },
    }


def contents(instance: InstanceSpec) -> dict[str, bytes]:
    """Every file of the drive, by its path on it."""
    files: dict[str, bytes] = {}
    meta = json.dumps(meta_data(instance), indent=1).encode()
    user_data = instance.guest.user_data
    for version in VERSIONS:
        files[f"openstack/{version}/meta_data.json"] = meta
        if user_data is not None:
            files[f"openstack/{version}/user_data"] = _decoded(user_data)
    for index, injected in enumerate(instance.guest.files):
        files[f"openstack/content/{index:04d}"] = _decoded(injected.contents)
    files["ec2/latest/meta-data.json"] = json.dumps(ec2_meta_data(instance), indent=1).encode()
    if user_data is not None:
        files["ec2/latest/user-data"] = _decoded(user_data)
    return files


def image(files: Mapping[str, bytes]) -> bytes:
    """An ISO 9660 image labelled ``config-2`` holding ``files`` (path on the drive ->
    bytes), with Rock Ridge names (what Linux mounts) and Joliet names (what Windows
    reads); the drive is small (metadata and a few personality files), so it is made in
    memory."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=LABEL)
    made: set[str] = set()
    for path, data in sorted(files.items()):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/" + "/".join(parts[:depth])
            if directory not in made:
                iso.add_directory(
                    iso_path=directory, rr_name=parts[depth - 1], joliet_path=directory
                )
                made.add(directory)
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            iso_path=f"/{path}",
            rr_name=parts[-1],
            joliet_path=f"/{path}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def write(path: Path, instance: InstanceSpec) -> None:
    """Build the server's drive at ``path``, replacing one there: whole or not at all."""
    data = image(contents(instance))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
