"""Reading a config drive back (compute_agent/config_drive.py), with the library that wrote
it: every file on it by its Rock Ridge path, and its label."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycdlib


@dataclass(frozen=True)
class Drive:
    label: str
    #: path on the drive (no leading slash) -> bytes
    files: dict[str, bytes]

    def json(self, path: str) -> Any:
        return json.loads(self.files[path])

    @property
    def meta_data(self) -> Any:
        return self.json("openstack/latest/meta_data.json")

    def delivered(self) -> dict[str, bytes]:
        """What the guest is to write: each personality file's path and contents."""
        return {
            entry["path"]: self.files["openstack" + entry["content_path"]]
            for entry in self.meta_data["files"]
        }


def read_drive(source: Path | bytes) -> Drive:
    iso = pycdlib.PyCdlib()
    if isinstance(source, bytes):
        iso.open_fp(io.BytesIO(source))
    else:
        iso.open(str(source))
    try:
        files: dict[str, bytes] = {}
        for directory, _, names in iso.walk(rr_path="/"):
            for name in names:
                path = f"{directory.rstrip('/')}/{name}"
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, rr_path=path)
                files[path.lstrip("/")] = out.getvalue()
        label = iso.pvd.volume_identifier.decode().strip()
    finally:
        iso.close()
    return Drive(label, files)
