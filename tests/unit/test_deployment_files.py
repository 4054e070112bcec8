"""The Dockerfiles stay consistent with the code (read here; tests/compose builds and runs
them where Docker is there). docker-compose.yml and deploy/k8s/ are checked in
test_deploy_manifests.py."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the official image users pull by default; CI passes a base built by debootstrap
#: (deploy/ci/compose-images.sh) as BASE_IMAGE
OFFICIAL_PYTHON = "python:3.11-slim-bookworm"


def test_dockerfile_copies_every_package_it_installs() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for package in ("api_gateway", "conductor", "compute_agent", "shared", "stratus"):
        assert f"COPY {package} ./{package}" in dockerfile
    # the libvirt binding for agents, the S3 client for gateways keeping images in a bucket
    assert "'.[libvirt,s3]'" in dockerfile


def test_python_images_take_their_base_as_a_build_argument() -> None:
    for path in (ROOT / "deploy" / "Dockerfile", ROOT / "deploy" / "keystone" / "Dockerfile"):
        lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
        assert lines[0] == f"ARG BASE_IMAGE={OFFICIAL_PYTHON}", path
        assert lines[1] == "FROM ${BASE_IMAGE}", path
        text = path.read_text()
        # a virtualenv works on either base (Debian's Python refuses pip outside one), and
        # is first on PATH, so `python` (the compose health checks) and the programs are its
        venv = re.search(r"^RUN python3 -m venv (\S+)$", text, re.MULTILINE)
        assert venv is not None, path
        assert re.search(rf"^ENV PATH={venv.group(1)}/bin:", text, re.MULTILINE), path
