"""docker-compose.yml, deploy/proxy/haproxy.cfg and deploy/k8s/ are valid and agree with the
code, checked offline (tests/compose starts the compose file for real where Docker is there):

* schemas: the Compose Specification's JSON schema (the copy check-jsonschema ships) and the
  Kubernetes API's (kubernetes-validate, strict: unknown fields are errors), each first shown
  to reject a broken file; ``docker compose config``, ``kubectl kustomize`` and
  ``haproxy -c`` too where those programs are installed;
* meaning: every container that runs ``stratus`` has a command ``stratus``'s own parser
  accepts, and settings (resolved from its environment, ConfigMaps and Secrets) that load and
  hold what its role needs (agents never the database); health checks and probes ask /healthz
  and /readyz on the port the role serves them on; Prometheus scrapes exactly those ports; the
  proxy balances over exactly the compose gateways;
* CI's variant (docker-compose.ci.yml over docker-compose.yml, deploy/ci/haproxy.cfg): every
  service on the host's network, bound to loopback on ports of its own, clear of the
  machine's own PostgreSQL and RabbitMQ and the same ones tests/compose talks to.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate
import pytest
import yaml

from api_gateway.auth.exposure import check_exposure, is_loopback
from shared.config import Settings
from stratus import cli
from tests.compose import deployment as compose_suite

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CI = ROOT / "docker-compose.ci.yml"
HAPROXY = ROOT / "deploy" / "proxy" / "haproxy.cfg"
HAPROXY_CI = ROOT / "deploy" / "ci" / "haproxy.cfg"
COMPOSE_IMAGES = ROOT / "deploy" / "ci" / "compose-images.sh"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"

#: what each role must be given; agents are also never given the database
#: (docs/architecture.md), nor conductors the message key (they forward admin passwords
#: sealed: shared/sealing.py)
NEEDS = {
    "api": ("database_url", "amqp_url", "message_key"),
    "conductor": ("database_url", "amqp_url"),
    "agent": ("amqp_url", "message_key"),
    "db": ("database_url",),
}

Doc = dict[str, Any]


# --- reading -----------------------------------------------------------------------------------


def compose() -> Doc:
    data: Doc = yaml.safe_load(COMPOSE.read_text())
    return data


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` as it comes out with nothing exported."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def role_of(argv: list[str]) -> str:
    """The ``stratus`` subcommand ``argv`` runs, as ``stratus``'s own parser reads it (an
    invalid command line fails the test through argparse's SystemExit)."""
    command: str = cli._parser().parse_args(argv).command
    return command


def settings_from(environment: Mapping[str, str]) -> Settings:
    """The settings a process started with ``environment`` (and no other STRATUS_ variable)
    loads: a value the model refuses fails here as it would at the process's start."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    with mock.patch.dict(os.environ, {**kept, **environment}, clear=True):
        return Settings()


def check_role_settings(where: str, role: str, settings: Settings) -> None:
    for name in NEEDS[role]:
        assert getattr(settings, name), f"{where}: {role} needs STRATUS_{name.upper()}"
    if role == "agent":
        assert settings.database_url is None, f"{where}: an agent must not get the database"
    if role in ("conductor", "db"):
        assert settings.message_key is None, f"{where}: only gateways and agents need the key"
    if role in ("conductor", "agent"):
        assert settings.metrics_host == "0.0.0.0", f"{where}: health/metrics unreachable"


# --- the validators reject what is wrong -------------------------------------------------------


def compose_schema() -> Doc:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: Doc = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def compose_errors(document: Doc) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert compose_errors(compose()) == []


def test_the_compose_schema_check_rejects_a_broken_file() -> None:
    broken = compose()
    broken["services"]["api1"] = {**broken["services"]["api1"], "comand": ["api"]}
    broken["services"]["proxy"]["depends_on"] = 5
    assert len(compose_errors(broken)) >= 2


@pytest.mark.parametrize(
    "program",
    [["docker", "compose"], ["docker-compose"]],
    ids=["docker compose", "docker-compose"],
)
def test_docker_compose_accepts_the_file(program: list[str]) -> None:
    if shutil.which(program[0]) is None:
        pytest.skip(f"{program[0]} is not installed: apt-get install docker.io docker-compose")
    if program == ["docker", "compose"]:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode != 0:
            pytest.skip(
                "the docker CLI has no compose plugin: apt-get install docker-compose-plugin"
            )
    profiles = ["--profile", "keystone", "--profile", "monitoring"]
    checked = subprocess.run(
        [*program, "-f", str(COMPOSE), *profiles, "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert checked.returncode == 0, checked.stderr


def k8s_files() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / name for name in kustomization["resources"]]


def k8s_objects() -> list[Doc]:
    return [doc for path in k8s_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kustomization_lists_every_manifest() -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(p.name for p in k8s_files()) == sorted(on_disk)


def test_every_manifest_follows_the_kubernetes_api_schema() -> None:
    for doc in k8s_objects():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_schema_check_rejects_a_broken_manifest() -> None:
    deployment = next(d for d in k8s_objects() if d["kind"] == "Deployment")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomize_builds_the_manifests_into_the_namespace() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: install a Kubernetes client to check kustomize")
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    assert len(objects) == len(k8s_objects())
    for doc in objects:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "stratus", doc["metadata"]["name"]


@pytest.mark.parametrize("config", [HAPROXY, HAPROXY_CI], ids=["compose", "ci"])
def test_haproxy_accepts_its_configuration(config: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed: apt-get install haproxy")
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- docker-compose.yml means what it should -----------------------------------------------------


def stratus_services() -> Iterator[tuple[str, Doc, str]]:
    """(name, service, role) of every compose service that runs the stratus image."""
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith("stratus:"):
            yield name, service, role_of(service["command"])


def compose_environment(service: Doc) -> dict[str, str]:
    return {k: interpolate(str(v)) for k, v in service.get("environment", {}).items()}


def test_compose_runs_the_roles_in_their_numbers() -> None:
    services = compose()["services"]
    roles = {name: role for name, _, role in stratus_services()}
    assert roles == {
        "migrate": "db",
        "api1": "api",
        "api2": "api",
        "conductor1": "conductor",
        "conductor2": "conductor",
        "agent1": "agent",
        "agent2": "agent",
    }
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("agent1", "agent2"):  # each agent is the host of its own name
        assert services[name]["command"] == ["agent", "--host", name]
    optional = {name: s.get("profiles") for name, s in services.items() if s.get("profiles")}
    assert optional == {
        "keystone": ["keystone"],
        "prometheus": ["monitoring"],
        "grafana": ["monitoring"],
    }


def test_compose_gateways_share_the_image_store_and_agents_download_from_them() -> None:
    stores = set()
    for name, service, role in stratus_services():
        settings = settings_from(compose_environment(service))
        # {container path: volume} of "volume:path[:mode]" entries
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}
        if role == "api":
            stores.add(mounts[str(settings.image_store)])
        elif role == "agent":
            assert settings.image_api_url == "http://proxy:8774", name
            assert not mounts, f"{name}: agents share no volume"
    assert len(stores) == 1, "every gateway writes the one image store"


def test_every_compose_role_loads_settings_with_what_it_needs() -> None:
    for name, service, role in stratus_services():
        check_role_settings(name, role, settings_from(compose_environment(service)))


def test_gateways_can_be_switched_to_keystone_with_everything_it_needs() -> None:
    for name, service, role in stratus_services():
        if role == "api":
            environment = {**compose_environment(service), "STRATUS_AUTH_STRATEGY": "keystone"}
            assert settings_from(environment).auth_strategy == "keystone", name


def health_url(service: Doc) -> tuple[int, str]:
    """The port and path a compose healthcheck asks on 127.0.0.1."""
    found = re.search(
        r"http://127\.0\.0\.1:(\d+)(/\S*?)['\"]", " ".join(service["healthcheck"]["test"])
    )
    assert found is not None, service["healthcheck"]
    return int(found.group(1)), found.group(2)


def test_every_long_running_compose_service_has_a_healthcheck_on_its_health_port() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if name != "migrate":
            assert "healthcheck" in service, name
    for name, service, role in stratus_services():
        if role == "db":
            continue
        settings = settings_from(compose_environment(service))
        port = settings.api_port if role == "api" else settings.metrics_port
        assert health_url(service) == (port, "/readyz"), name


def image_environment() -> dict[str, str]:
    """The ``ENV`` of the stratus image (deploy/Dockerfile), which every container starts with."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = re.findall(r"^ENV\s+(.*)$", text, re.MULTILINE)
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(pairs)))


def published_addresses(service: Doc) -> list[str]:
    """The host address each of ``service``'s published ports binds to, with nothing exported
    (a port without one binds to every interface: ``0.0.0.0``)."""
    addresses = []
    for port in service.get("ports", []):
        parts = interpolate(str(port)).split(":")
        addresses.append(parts[0] if len(parts) == 3 else "0.0.0.0")
    return addresses


def test_no_compose_service_is_published_beyond_loopback_by_default() -> None:
    for name, service in compose()["services"].items():
        for address in published_addresses(service):
            assert is_loopback(address), f"{name} is published on {address}"


def test_no_compose_gateway_is_a_public_noauth_cloud() -> None:
    for name, service, role in stratus_services():
        if role != "api":
            continue
        settings = settings_from({**image_environment(), **compose_environment(service)})
        assert settings.auth_strategy == "noauth", f"{name}: the default is noauth"
        assert not is_loopback(settings.api_host), f"{name}: the proxy must reach it"
        assert not service.get("ports"), f"{name}: only the proxy on loopback may publish it"
        check_exposure(settings)  # it starts: the override is there, and it warns


def test_no_kubernetes_gateway_serves_noauth() -> None:
    for name, _, container, role in containers():
        if role == "api":
            settings = settings_from({**image_environment(), **container_environment(container)})
            assert settings.auth_strategy == "keystone", name
            assert not settings.noauth_allow_remote, name
            check_exposure(settings)


def test_compose_dependencies_name_real_services_and_wait_for_the_migration() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert "profiles" not in services[dependency] or "profiles" in service, name
    for name, _, role in stratus_services():
        if role in ("api", "conductor"):
            wait = services[name]["depends_on"]["migrate"]["condition"]
            assert wait == "service_completed_successfully", name


def test_compose_only_sets_settings_that_exist() -> None:
    known = {f"STRATUS_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose()["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("STRATUS_"):
                assert variable in known, f"{name} sets unknown {variable}"


def test_files_the_compose_file_mounts_are_in_the_repository() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        build = service.get("build")
        if build:
            dockerfile = build.get("dockerfile", "Dockerfile")
            assert (ROOT / build["context"] / dockerfile).is_file(), name


def haproxy_backend(config: Path = HAPROXY) -> tuple[list[str], dict[str, str]]:
    """The ``gateways`` backend's lines, and its servers (name -> address)."""
    text = config.read_text()
    section = re.search(r"^backend gateways\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE)
    assert section is not None
    lines = [line.strip() for line in section.group(1).splitlines() if line.strip()]
    servers = {
        parts[1]: parts[2] for parts in (line.split() for line in lines) if parts[0] == "server"
    }
    return lines, servers


def test_the_proxy_round_robins_over_exactly_the_gateways_checking_healthz() -> None:
    services = compose()["services"]
    lines, servers = haproxy_backend()
    gateways = sorted(name for name, _, role in stratus_services() if role == "api")
    assert sorted(servers) == gateways
    for name, address in servers.items():
        host, port = address.split(":")
        assert host == name
        assert int(port) == settings_from(compose_environment(services[name])).api_port
    assert "balance roundrobin" in lines
    assert "http-check send meth GET uri /healthz" in lines
    assert "http-check expect status 200" in lines
    default_server = next(line for line in lines if line.startswith("default-server"))
    assert " check" in f" {default_server} "
    assert re.search(r"^\s*bind :8774$", HAPROXY.read_text(), re.MULTILINE)
    assert [interpolate(p) for p in services["proxy"]["ports"]] == ["127.0.0.1:8774:8774"]
    assert not any("ports" in services[name] for name in gateways)


def test_prometheus_scrapes_every_compose_role_where_it_serves_metrics() -> None:
    services = compose()["services"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    expected = set()
    for name, service, role in stratus_services():
        if role != "db":
            settings = settings_from(compose_environment(service))
            expected.add(f"{name}:{settings.api_port if role == 'api' else settings.metrics_port}")
    assert expected <= targets
    for target in targets - expected:
        assert target.split(":")[0] not in services or target.startswith("prometheus:"), target


# --- docker-compose.ci.yml: CI's variant, on the host's network --------------------------------


def compose_ci() -> Doc:
    data: Doc = yaml.safe_load(COMPOSE_CI.read_text())
    return data


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of an override file, as far as these files use it: mappings merge key by
    key, a service's volumes by their path in the container, any other list is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if key == "volumes" and isinstance(base, list):
        by_target = {str(v).split(":")[1]: v for v in base}
        by_target.update({str(v).split(":")[1]: v for v in override})
        return list(by_target.values())
    return override


def compose_ci_services() -> dict[str, Doc]:
    """Every service as CI runs it: docker-compose.yml with docker-compose.ci.yml over it."""
    services: dict[str, Doc] = merge(compose(), compose_ci())["services"]
    return services


def ci_stratus_services() -> Iterator[tuple[str, Doc, str]]:
    for name, service in compose_ci_services().items():
        if service.get("command") and service.get("image", "").startswith("stratus-ci:"):
            yield name, service, role_of(service["command"])


def test_the_ci_override_follows_the_compose_specification() -> None:
    assert compose_errors(compose_ci()) == []
    assert compose_errors(merge(compose(), compose_ci())) == []


def test_docker_compose_accepts_the_ci_variant() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed: apt-get install docker-compose")
    files = ["-f", str(COMPOSE), "-f", str(COMPOSE_CI)]
    checked = subprocess.run(
        ["docker-compose", *files, "--profile", "keystone", "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_ci_variant_runs_every_service_but_monitoring_on_the_host_network() -> None:
    ci = compose_ci()["services"]
    for name, service in compose()["services"].items():
        if service.get("profiles") == ["monitoring"]:
            assert name not in ci, name  # CI does not start the monitoring profile
            continue
        assert ci[name]["network_mode"] == "host", name


def test_the_ci_images_are_built_on_the_ci_base_without_any_registry() -> None:
    base = re.search(r"^BASE_IMAGE=(\S+):\$SUITE$", COMPOSE_IMAGES.read_text(), re.MULTILINE)
    suite = re.search(r"^SUITE=(\S+)$", COMPOSE_IMAGES.read_text(), re.MULTILINE)
    assert base and suite
    services = compose_ci_services()
    images = {f"{base.group(1)}:{suite.group(1)}"}
    for name, service in services.items():
        if service.get("profiles") == ["monitoring"]:
            continue
        build = service["build"]
        assert build["args"]["BASE_IMAGE"] == f"{base.group(1)}:{suite.group(1)}", name
        assert build["network"] == "host", f"{name}: the build has no bridge to use"
        dockerfile = (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).read_text()
        assert re.search(r"^ARG BASE_IMAGE=\S+$", dockerfile, re.MULTILINE), name
        assert "FROM ${BASE_IMAGE}" in dockerfile, name
        images.add(service["image"])
    # what tests/compose waits for before it starts anything
    assert images == set(compose_suite.IMAGES)


def test_every_ci_role_loads_settings_on_loopback_on_the_ports_tests_compose_uses() -> None:
    ports = {}
    for name, service, role in ci_stratus_services():
        settings = settings_from({**image_environment(), **compose_environment(service)})
        for need in NEEDS[role]:
            assert getattr(settings, need), f"{name}: {role} needs STRATUS_{need.upper()}"
        if settings.database_url:
            assert "@127.0.0.1:15432/" in settings.database_url, name
        if settings.amqp_url:
            assert "@127.0.0.1:15672/" in settings.amqp_url, name
        if role == "agent":
            assert settings.database_url is None, f"{name}: an agent must not get the database"
            assert settings.image_api_url == compose_suite.API, name
        if role == "db":
            continue
        host, port = (
            (settings.api_host, settings.api_port)
            if role == "api"
            else (settings.metrics_host, settings.metrics_port)
        )
        assert host == "127.0.0.1", f"{name} listens on {host}"
        assert health_url(service) == (port, "/readyz"), name
        if role == "api":
            check_exposure(settings)  # a noauth gateway on loopback: no override needed
        ports[name] = port
    assert ports == compose_suite.ROLE_PORTS


def test_the_ci_variant_keeps_to_loopback_ports_of_its_own() -> None:
    services = compose_ci_services()
    environment = {name: compose_environment(s) for name, s in services.items()}
    binds = re.findall(r"^\s*bind (\S+)$", HAPROXY_CI.read_text(), re.MULTILINE)
    assert all(b.startswith("127.0.0.1:") for b in binds), binds
    rabbitmq = environment["rabbitmq"]
    assert rabbitmq["RABBITMQ_NODE_IP_ADDRESS"] == rabbitmq["ERL_EPMD_ADDRESS"] == "127.0.0.1"
    assert "inet_dist_use_interface {127,0,0,1}" in rabbitmq["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert environment["postgres"]["POSTGRES_LISTEN_ADDRESSES"] == "127.0.0.1"
    assert environment["keystone"]["KEYSTONE_LISTEN_ADDRESS"] == "127.0.0.1"
    ports = [
        *(int(b.split(":")[1]) for b in binds),
        *compose_suite.ROLE_PORTS.values(),
        int(environment["postgres"]["PGPORT"]),
        int(rabbitmq["RABBITMQ_NODE_PORT"]),
        int(rabbitmq["RABBITMQ_DIST_PORT"]),
        int(rabbitmq["ERL_EPMD_PORT"]),
        int(environment["keystone"]["KEYSTONE_PORT"]),
    ]
    assert len(ports) == len(set(ports)), ports
    # the machine's own PostgreSQL, RabbitMQ (AMQP, distribution) and epmd
    assert not set(ports) & {5432, 5672, 25672, 4369}
    assert max(ports) < 32768, "a port in the ephemeral range may be taken by any connection"
    assert sorted(ports) == sorted(compose_suite.PORTS)
    assert compose_suite.API.endswith(":8774") and 8774 in ports
    # health checks ask the ports the services listen on
    assert "-p 15432" in " ".join(services["postgres"]["healthcheck"]["test"])
    monitoring = re.search(
        r"^frontend monitoring\n\s*bind 127\.0\.0\.1:(\d+)$", HAPROXY_CI.read_text(), re.MULTILINE
    )
    assert monitoring is not None
    assert f":{monitoring.group(1)}/healthz" in " ".join(services["proxy"]["healthcheck"]["test"])
    keystone_urls = {v for k, v in environment["keystone"].items() if k.endswith("_URL")}
    assert all(url.startswith("http://127.0.0.1:") for url in keystone_urls), keystone_urls
    assert (
        f"http://127.0.0.1:{environment['keystone']['KEYSTONE_PORT']}/v3" == compose_suite.KEYSTONE
    )


def test_the_ci_proxy_balances_over_the_ci_gateways_as_the_compose_proxy_does() -> None:
    lines, servers = haproxy_backend(HAPROXY_CI)
    compose_lines, compose_servers = haproxy_backend()
    assert sorted(servers) == sorted(compose_servers)
    for name, address in servers.items():
        assert address == f"127.0.0.1:{compose_suite.ROLE_PORTS[name]}", name
    # the same balancing and checks; only Docker's DNS is gone
    assert [line for line in lines if not line.startswith("server")] == [
        re.sub(r" resolvers \S+ init-addr \S+", "", line)
        for line in compose_lines
        if not line.startswith("server")
    ]
    mounts = compose_ci_services()["proxy"]["volumes"]
    assert mounts == ["./deploy/ci/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]


def test_the_ci_scripts_and_entrypoints_are_valid() -> None:
    scripts = [
        ("bash", COMPOSE_IMAGES),
        ("sh", ROOT / "deploy" / "compose" / "postgres" / "entrypoint.sh"),
        ("sh", ROOT / "deploy" / "compose" / "rabbitmq" / "entrypoint.sh"),
    ]
    for shell, script in scripts:
        checked = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        assert os.access(script, os.X_OK), script
    for name in ("postgres", "rabbitmq"):
        dockerfile = (ROOT / "deploy" / "compose" / name / "Dockerfile").read_text()
        assert "COPY entrypoint.sh " in dockerfile, name


# --- deploy/k8s means what it should -----------------------------------------------------------


def by_kind(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in k8s_objects() if d["kind"] == kind}


def workloads() -> Iterator[tuple[Doc, Doc]]:
    """(workload, its pod template) of every Deployment, DaemonSet and Job."""
    for doc in k8s_objects():
        if doc["kind"] in ("Deployment", "DaemonSet", "Job"):
            yield doc, doc["spec"]["template"]


def containers() -> Iterator[tuple[str, Doc, Doc, str]]:
    """(workload name, pod template, container, role) of every container."""
    for workload, template in workloads():
        for container in template["spec"]["containers"]:
            yield workload["metadata"]["name"], template, container, role_of(container["args"])


NODE_NAME = "hypervisor-7"


def container_environment(container: Doc) -> dict[str, str]:
    """The environment Kubernetes gives ``container``, from the manifests' own ConfigMaps
    and Secrets (a reference to a missing one fails); spec.nodeName is ``NODE_NAME``."""
    config_maps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, "Secrets are given key by key, never whole"
        environment.update(config_maps[source["configMapRef"]["name"]]["data"])
    for variable in container.get("env", []):
        source = variable.get("valueFrom", {})
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            environment[variable["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            environment[variable["name"]] = config_maps[ref["name"]]["data"][ref["key"]]
        else:
            assert source["fieldRef"]["fieldPath"] == "spec.nodeName", variable
            environment[variable["name"]] = NODE_NAME
    return environment


def test_the_workloads_run_the_roles_in_their_numbers() -> None:
    roles = {name: (role, container["args"]) for name, _, container, role in containers()}
    assert roles == {
        "stratus-db-upgrade": ("db", ["db", "upgrade"]),
        "stratus-api": ("api", ["api"]),
        "stratus-conductor": ("conductor", ["conductor"]),
        "stratus-agent": ("agent", ["agent"]),
    }
    deployments = by_kind("Deployment")
    assert deployments["stratus-api"]["spec"]["replicas"] == 2
    assert deployments["stratus-conductor"]["spec"]["replicas"] == 2
    images = {i["name"] for i in yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]}
    for name, _, container, _ in containers():
        assert "command" not in container, f"{name}: the image's entrypoint is stratus"
        assert container["image"] in images, name


def test_every_container_loads_settings_with_what_its_role_needs() -> None:
    for name, _, container, role in containers():
        settings = settings_from(container_environment(container))
        check_role_settings(name, role, settings)


def test_agents_run_on_hypervisor_nodes_against_their_libvirt() -> None:
    agent = by_kind("DaemonSet")["stratus-agent"]["spec"]["template"]
    assert agent["spec"]["nodeSelector"] == {"stratus.io/hypervisor": "true"}
    container = agent["spec"]["containers"][0]
    settings = settings_from(container_environment(container))
    assert (settings.host, settings.libvirt_uri) == (NODE_NAME, "qemu:///system")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    host_paths = {v["name"]: v["hostPath"]["path"] for v in agent["spec"]["volumes"]}
    assert mounts["libvirt-run"] == host_paths["libvirt-run"] == "/var/run/libvirt"
    # libvirtd on the node opens the files the agent names: the same paths on both sides
    for volume, path in host_paths.items():
        assert mounts[volume] == path, volume
    assert str(settings.instances_dir) in host_paths.values()
    assert str(settings.image_cache_dir) in host_paths.values()
    # no node shares storage: images come from the gateways' image API
    assert settings.image_api_url == "http://stratus-api:8774"
    assert "stratus-api" in by_kind("Service")


def test_the_gateways_share_one_read_write_many_image_store() -> None:
    gateway = by_kind("Deployment")["stratus-api"]["spec"]["template"]
    container = gateway["spec"]["containers"][0]
    settings = settings_from(container_environment(container))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in gateway["spec"]["volumes"]}
    claim = volumes[mounts[str(settings.image_store)]]["persistentVolumeClaim"]["claimName"]
    assert by_kind("PersistentVolumeClaim")[claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert gateway["spec"]["securityContext"]["fsGroup"] == 10001  # the image's user writes it


def port_number(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == port)


def test_probes_ask_readyz_and_healthz_where_the_role_serves_them() -> None:
    for name, template, container, role in containers():
        assert container["resources"]["requests"] and container["resources"]["limits"], name
        if role == "db":
            continue
        settings = settings_from(container_environment(container))
        port = settings.api_port if role == "api" else settings.metrics_port
        probes = {
            kind: (probe["httpGet"]["path"], port_number(container, probe["httpGet"]["port"]))
            for kind in ("readinessProbe", "livenessProbe", "startupProbe")
            if (probe := container.get(kind))
        }
        assert probes["readinessProbe"] == ("/readyz", port), name
        assert probes["livenessProbe"] == ("/healthz", port), name
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert int(annotations["prometheus.io/port"]) == port, name


def test_services_select_pods_and_ports_that_exist() -> None:
    templates = [template for _, template in workloads()]
    for name, service in by_kind("Service").items():
        selector = service["spec"]["selector"]
        selected = [t for t in templates if selector.items() <= t["metadata"]["labels"].items()]
        assert selected, f"{name} selects no pod"
        for template in selected:
            for port in service["spec"]["ports"]:
                numbers = [
                    port_number(container, port["targetPort"])
                    for container in template["spec"]["containers"]
                ]
                assert numbers, name
    assert by_kind("Service")["stratus-api"]["spec"]["ports"][0]["port"] == 8774


def test_secrets_and_config_maps_hold_only_settings_that_exist() -> None:
    known = {f"STRATUS_{name.upper()}" for name in Settings.model_fields}
    for kind, field in (("ConfigMap", "data"), ("Secret", "stringData")):
        for name, doc in by_kind(kind).items():
            unknown = set(doc[field]) - known
            assert not unknown, f"{kind} {name}: {unknown}"
    secret = by_kind("Secret")["stratus-secrets"]["stringData"]
    assert {"STRATUS_DATABASE_URL", "STRATUS_AMQP_URL", "STRATUS_KEYSTONE_PASSWORD"} <= set(secret)


# --- deploy/keystone ---------------------------------------------------------------------------


def test_the_keystone_entrypoint_is_a_valid_script_and_populate_compiles() -> None:
    keystone = ROOT / "deploy" / "keystone"
    checked = subprocess.run(
        ["sh", "-n", str(keystone / "entrypoint.sh")], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert os.access(keystone / "entrypoint.sh", os.X_OK)
    compile((keystone / "populate.py").read_text(), "populate.py", "exec")
    dockerfile = (keystone / "Dockerfile").read_text()
    for name in ("keystone.conf", "stratus_keystone_wsgi.py", "entrypoint.sh", "populate.py"):
        assert name in dockerfile and (keystone / name).is_file(), name
    environment = compose()["services"]["keystone"]["environment"]
    used = set(re.findall(r"env\[\"(\w+)\"\]", (keystone / "populate.py").read_text()))
    assert used <= set(environment), used - set(environment)


def test_pods_run_as_the_images_own_user() -> None:
    """runAsNonRoot can only be checked against a numeric user: the Dockerfile's fixed uid."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    uid = re.search(r"useradd --system --uid (\d+)", dockerfile)
    assert uid is not None
    for workload, template in workloads():
        context = template["spec"].get("securityContext", {})
        if workload["kind"] != "DaemonSet":  # agents run as root: see deploy/k8s/agent.yaml
            assert context["runAsNonRoot"] is True, workload["metadata"]["name"]
            assert context["runAsUser"] == int(uid.group(1)), workload["metadata"]["name"]


def test_ci_builds_the_compose_images_and_requires_the_compose_suite() -> None:
    """.ci/run builds the images before `make test`, which must then run tests/compose (a
    deployment that does not come up fails CI rather than skipping)."""
    script = (ROOT / ".ci" / "run").read_text()
    build = script.index("deploy/ci/compose-images.sh\n")
    require = script.index("export STRATUS_REQUIRE_COMPOSE=1")
    assert build < require < script.rindex("make test")
    assert "--storage-driver vfs --bridge none" in script
