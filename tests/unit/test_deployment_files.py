"""The Dockerfile stays consistent with the code (Docker does not run here, so it is checked
by reading). docker-compose.yml and deploy/k8s/ are checked in test_deploy_manifests.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_copies_every_package_it_installs() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for package in ("api_gateway", "conductor", "compute_agent", "shared", "stratus"):
        assert f"COPY {package} ./{package}" in dockerfile
    # the libvirt binding for agents, the S3 client for gateways keeping images in a bucket
    assert "'.[libvirt,s3]'" in dockerfile
