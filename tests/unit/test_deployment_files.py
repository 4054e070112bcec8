"""docker-compose.yml and the Dockerfile stay consistent with the code (Docker does not run
here, so they are checked by reading)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_runs_every_role_against_postgres_and_rabbitmq() -> None:
    services = _compose()["services"]
    commands = {name: tuple(s.get("command", [])) for name, s in services.items()}
    assert commands["api"] == ("api",)
    assert commands["conductor"] == ("conductor",)
    assert commands["migrate"] == ("db", "upgrade")
    agents = [c for c in commands.values() if c[:1] == ("agent",)]
    assert len(agents) == 2 and len({a[2] for a in agents}) == 2
    for name in ("postgres", "rabbitmq", "api"):
        assert "healthcheck" in services[name], name


def test_compose_dependencies_name_real_services() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_compose_only_sets_settings_that_exist() -> None:
    known = {f"STRATUS_{name.upper()}" for name in Settings.model_fields}
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("STRATUS_"):
                assert variable in known, f"{name} sets unknown {variable}"


def test_dockerfile_copies_every_package_it_installs() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for package in ("api_gateway", "conductor", "compute_agent", "shared", "stratus"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "'.[libvirt]'" in dockerfile
