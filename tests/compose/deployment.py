"""docker-compose.yml, started for real: CI's variant (docker-compose.ci.yml) driven through
docker-compose 1.29 and the Docker daemon, and talked to over plain HTTP on loopback.

What it needs: the ``docker`` client (``$DOCKER``, else /usr/bin/docker, the one Debian's
docker.io installs beside its daemon), ``docker-compose`` (``$DOCKER_COMPOSE``), a daemon that
answers, the images deploy/ci/compose-images.sh builds, and the loopback ports of
docker-compose.ci.yml free. ``lacking()`` names whatever is missing.

docker-compose 1.29 refuses a service on the host's network that publishes ports ("host"
network_mode is incompatible with port_bindings), and an override file cannot take away the
``ports`` docker-compose.yml gives the proxy and Keystone (Compose v2's ``!reset`` could). So
every command runs on the two files rendered into one (``docker-compose config``) with the
``ports`` of host-network services dropped: ``render``. By hand, the same:
``python -m tests.compose.deployment up -d`` (any docker-compose arguments).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT = os.environ.get("STRATUS_COMPOSE_PROJECT", "stratus-ci")
FILES = ("docker-compose.yml", "docker-compose.ci.yml")
BUILD = "deploy/ci/compose-images.sh"

#: the Compute API, through HAProxy
API = "http://127.0.0.1:8774"
KEYSTONE = "http://127.0.0.1:15000/v3"
#: where each role serves /healthz, /readyz and /metrics (docker-compose.ci.yml)
ROLE_PORTS = {
    "api1": 18774,
    "api2": 18775,
    "conductor1": 19181,
    "conductor2": 19182,
    "agent1": 19183,
    "agent2": 19184,
}
#: every loopback port the deployment listens on: each must be free before it starts
PORTS = (8774, 18405, *ROLE_PORTS.values(), 15432, 15672, 15673, 14369, 15000)
#: the services that run until `down`, each with a health check; `migrate` runs once
LONG_RUNNING = ("postgres", "rabbitmq", "proxy", *ROLE_PORTS)
IMAGES = (
    "stratus-ci-base:bookworm",
    "stratus-ci:latest",
    "stratus-ci-postgres:latest",
    "stratus-ci-rabbitmq:latest",
    "stratus-ci-haproxy:latest",
    "stratus-ci-keystone:latest",
)
INSTALL = "apt-get install docker.io docker-compose debootstrap"

#: lines for the end of the session (tests/compose/conftest.py prints them)
REPORT: list[str] = []


def docker_program() -> str | None:
    chosen = os.environ.get("DOCKER")
    if chosen:
        return shutil.which(chosen)
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


def compose_program() -> str | None:
    return shutil.which(os.environ.get("DOCKER_COMPOSE", "docker-compose"))


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def lacking() -> str | None:
    """Why the deployment cannot be started here (a skip's reason), or None."""
    docker, compose = docker_program(), compose_program()
    if docker is None or compose is None:
        return f"the compose deployment needs docker and docker-compose: {INSTALL}"
    server = subprocess.run(
        [docker, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if server.returncode != 0:
        return (
            "the compose deployment needs a running Docker daemon "
            "(dockerd --storage-driver vfs --bridge none, as .ci/run starts it): "
            + " ".join(server.stderr.split())[-300:]
        )
    absent = [
        image
        for image in IMAGES
        if subprocess.run(
            [docker, "image", "inspect", image], capture_output=True, check=False
        ).returncode
        != 0
    ]
    if absent:
        return f"the compose deployment's images are not built ({', '.join(absent)}): {BUILD}"
    busy = [port for port in PORTS if port_in_use(port)]
    if busy:
        return f"the compose deployment's loopback ports are in use: {busy}"
    return None


@dataclass
class Container:
    service: str
    name: str
    state: str  # running, exited …
    health: str  # healthy, starting, unhealthy, or "" without a health check
    exit_code: int


class Compose:
    """docker-compose -p PROJECT -f docker-compose.yml -f docker-compose.ci.yml …"""

    def __init__(self) -> None:
        docker, compose = docker_program(), compose_program()
        assert docker is not None and compose is not None
        self.docker = docker
        self.program = compose
        self.rendered = Path(tempfile.mkdtemp(prefix="stratus-compose-")) / "compose.yml"
        self.compose = [compose, "-p", PROJECT, "--project-directory", str(ROOT)]
        self.compose += ["-f", str(self.rendered)]
        # docker-compose builds through the `docker` it finds first: the daemon's own
        self.path = f"{Path(docker).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    def render(self, env: Mapping[str, str] | None = None) -> None:
        """docker-compose.yml with docker-compose.ci.yml over it, as ``docker-compose config``
        merges them with ``env`` exported, less the ports of host-network services."""
        files = [arg for name in FILES for arg in ("-f", str(ROOT / name))]
        done = subprocess.run(
            [self.program, "-p", PROJECT, *files, "--profile", "keystone", "config"],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"docker-compose config: {done.stderr[-2000:]}"
        document = yaml.safe_load(done.stdout)
        for service in document["services"].values():
            if service.get("network_mode") == "host":
                service.pop("ports", None)
        self.rendered.write_text(yaml.safe_dump(document, sort_keys=False))

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 300,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "PATH": self.path, **(env or {})}
        self.render(env)
        command = [*self.compose, *args]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=environment,
            cwd=ROOT,
            timeout=timeout_s,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
            )
        return done

    def docker_cmd(self, *args: str, timeout_s: float = 60) -> str:
        done = subprocess.run(
            [self.docker, *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr[-2000:]}"
        return done.stdout

    def containers(self) -> dict[str, Container]:
        ids = self.docker_cmd(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"
        ).split()
        if not ids:
            return {}
        found = {}
        for info in json.loads(self.docker_cmd("inspect", *ids)):
            state = info["State"]
            service = info["Config"]["Labels"]["com.docker.compose.service"]
            found[service] = Container(
                service=service,
                name=info["Name"].lstrip("/"),
                state=state["Status"],
                health=state.get("Health", {}).get("Status", ""),
                exit_code=int(state["ExitCode"]),
            )
        return found

    def listeners(self) -> set[tuple[str, str, int]]:
        """(container, address, port) of every TCP socket a process of the project listens
        on (the containers share the host's network, so the host's sockets are theirs)."""
        import psutil

        pids: dict[int, str] = {}
        for container in self.containers().values():
            if container.state != "running":
                continue
            top = self.docker_cmd("top", container.name, "-eo", "pid")
            for line in top.splitlines()[1:]:
                pids[int(line.split()[0])] = container.service
        return {
            (pids[c.pid], c.laddr.ip, c.laddr.port)
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids
        }

    def table(self) -> str:
        """`docker ps -a` of the project: names, images and status with health."""
        return self.docker_cmd(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--format",
            "table {{.Names}}\t{{.Image}}\t{{.Status}}",
        ).rstrip()

    def logs(self, service: str, lines: int = 40) -> str:
        done = self.run("logs", "--no-color", f"--tail={lines}", service, check=False)
        return done.stdout[-6000:]

    def wait_healthy(self, services: Iterable[str], *, timeout_s: float) -> float:
        """Wait until every one of ``services`` is running and healthy (``migrate``: exited 0);
        the seconds it took. Fails, with their logs, on any that is not by then."""
        wanted = list(services)
        start = time.monotonic()
        while True:
            containers = self.containers()
            pending = []
            for name in wanted:
                container = containers.get(name)
                if container is None:
                    pending.append(f"{name}: no container")
                elif name == "migrate":
                    if container.state == "exited" and container.exit_code != 0:
                        raise AssertionError(f"migrate failed:\n{self.logs(name)}")
                    if container.state != "exited":
                        pending.append(f"{name}: {container.state}")
                elif container.health != "healthy":
                    pending.append(f"{name}: {container.state} {container.health}")
            if not pending:
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                logs = "\n".join(
                    f"--- {line.split(':')[0]}\n{self.logs(line.split(':')[0])}" for line in pending
                )
                raise AssertionError(
                    f"not healthy after {timeout_s:.0f} s: {pending}\n{self.table()}\n{logs}"
                )
            time.sleep(2)


# --- HTTP ------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {json.dumps(self.body)[:600] if self.body is not None else ''}"


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    timeout_s: float = 30,
) -> Reply:
    """One request; any HTTP status is an answer (connection failures raise)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            status, raw, headers = answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        status, raw, headers = error.code, error.read(), dict(error.headers)
    text = raw.decode(errors="replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return Reply(status, parsed, headers)


class Cloud:
    """The Compute API of one project, as one user (a noauth or a Keystone token)."""

    def __init__(self, project: str, token: str) -> None:
        self.base = f"{API}/v2/{project}"
        self.token = token

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        reply = http(method, self.base + path, body, token=self.token)
        assert reply.status == expect, f"{method} {path}: expected {expect}, got {reply}"
        return reply.body

    def action(self, server_id: str, body: dict[str, Any], expect: int = 202) -> None:
        self.call("POST", f"/servers/{server_id}/action", body, expect=expect)

    def boot(self, name: str, image: str, flavor: str) -> str:
        body = {"server": {"name": name, "imageRef": image, "flavorRef": flavor}}
        server_id: str = self.call("POST", "/servers", body, expect=202)["server"]["id"]
        return server_id

    def wait_for(self, server_id: str, status: str, *, timeout_s: float = 120) -> dict[str, Any]:
        """Poll until the server shows ``status`` (``DELETED``: until it is gone); an ERROR
        fails at once, with its fault."""
        deadline = time.monotonic() + timeout_s
        last: Reply | None = None
        while time.monotonic() < deadline:
            last = http("GET", f"{self.base}/servers/{server_id}", token=self.token)
            if status == "DELETED" and last.status == 404:
                return {}
            if last.status == 200:
                server: dict[str, Any] = last.body["server"]
                if server["status"] == status:
                    return server
                assert server["status"] != "ERROR", f"server {server_id} went ERROR: {last}"
            time.sleep(0.5)
        raise AssertionError(f"server {server_id} not {status} in {timeout_s:.0f} s; last: {last}")

    def delete(self, server_id: str) -> None:
        self.call("DELETE", f"/servers/{server_id}", expect=204)
        self.wait_for(server_id, "DELETED")


if __name__ == "__main__":  # python -m tests.compose.deployment up -d | ps | down -v …
    compose = Compose()
    compose.render()
    sys.exit(
        subprocess.run(
            [*compose.compose, *sys.argv[1:]],
            env={**os.environ, "PATH": compose.path},
            cwd=ROOT,
            check=False,
        ).returncode
    )
