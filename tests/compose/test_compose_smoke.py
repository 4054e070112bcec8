"""The compose deployment, used as a user would: through HAProxy on 127.0.0.1:8774.

In order (they share one deployment, conftest.py's ``compose_deployment``): the flavors; a
server booted, paused and unpaused, resized to the other agent and confirmed, deleted; every
role's /metrics; a gateway and a conductor killed, and the API still serving and booting; then
the ``keystone`` profile, with the gateways switched to Keystone and a token from it.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest

from tests.compose.conftest import HEALTHY_WITHIN_S, Deployment
from tests.compose.deployment import KEYSTONE, REPORT, ROLE_PORTS, ROOT, Cloud, Compose, http

#: noauth: user admin (an administrator: it sees each server's host) in project demo
NOAUTH = Cloud("demo", "admin:demo")
HOST = "OS-EXT-SRV-ATTR:host"


def image_and_flavors(cloud: Cloud) -> tuple[str, str, str]:
    """An image to boot, and the two smallest flavors it fits (to boot with, to resize to)."""
    images = cloud.call("GET", "/images/detail")["images"]
    active = [image for image in images if image["status"] == "ACTIVE"]
    assert active, f"no ACTIVE image to boot: {images}"
    image = min(active, key=lambda i: (i.get("minDisk", 0), i.get("minRam", 0), i["name"]))
    flavors = cloud.call("GET", "/flavors/detail")["flavors"]
    fitting = [
        f
        for f in flavors
        if f["disk"] >= image.get("minDisk", 0) and f["ram"] >= image.get("minRam", 0)
    ]
    smallest = sorted(fitting, key=lambda f: (f["ram"], f["disk"], f["vcpus"], f["id"]))
    assert len(smallest) >= 2, f"need two flavors {image['name']} fits, to resize: {flavors}"
    return image["id"], smallest[0]["id"], smallest[1]["id"]


def test_haproxy_accepts_both_proxy_configurations(compose_deployment: Deployment) -> None:
    """deploy/proxy/haproxy.cfg (Docker's DNS, for docker-compose.yml) is not what runs here:
    HAProxy (Debian's 2.6, in the CI image) checks it, as it does CI's own."""
    compose = compose_deployment.compose
    for config in ("deploy/proxy/haproxy.cfg", "deploy/ci/haproxy.cfg"):
        mount = f"{ROOT / config}:/check.cfg:ro"
        compose.docker_cmd(
            "run", "--rm", "--network", "none", "-v", mount, "stratus-ci-haproxy:latest",
            "haproxy", "-c", "-f", "/check.cfg",
        )  # fmt: skip


def test_the_api_lists_flavors_through_the_proxy(compose_deployment: Deployment) -> None:
    flavors = NOAUTH.call("GET", "/flavors")["flavors"]
    assert flavors, "no flavor"
    assert all({"id", "name", "links"} <= set(f) for f in flavors), flavors


def test_a_server_boots_pauses_resizes_across_the_agents_and_is_deleted(
    compose_deployment: Deployment,
) -> None:
    image, flavor, bigger = image_and_flavors(NOAUTH)
    server_id = NOAUTH.boot("compose-smoke", image, flavor)
    server = NOAUTH.wait_for(server_id, "ACTIVE")
    since_up = time.monotonic() - compose_deployment.up_at
    compose_deployment.notes["first ACTIVE"] = since_up
    REPORT.insert(0, f"time from `up` to the first ACTIVE server: {since_up:.1f} s")
    first_host = server[HOST]
    assert first_host in ("agent1", "agent2"), server

    NOAUTH.action(server_id, {"pause": None})
    NOAUTH.wait_for(server_id, "PAUSED")
    NOAUTH.action(server_id, {"unpause": None})
    NOAUTH.wait_for(server_id, "ACTIVE")

    # nova's default (allow_resize_to_same_host off): the resize goes to the other agent, whose
    # test hypervisor is another process's, and is given the domain's definition
    NOAUTH.action(server_id, {"resize": {"flavorRef": bigger}})
    resized = NOAUTH.wait_for(server_id, "VERIFY_RESIZE")
    assert resized[HOST] != first_host, f"the resize stayed on {first_host}: {resized}"
    NOAUTH.action(server_id, {"confirmResize": None}, expect=204)  # as nova answers it
    confirmed = NOAUTH.wait_for(server_id, "ACTIVE")
    assert confirmed["flavor"]["id"] == bigger, confirmed["flavor"]
    assert confirmed[HOST] == resized[HOST], confirmed
    REPORT.append(f"resize: {first_host} -> {confirmed[HOST]}, confirmed")

    NOAUTH.delete(server_id)


@pytest.mark.parametrize("service", list(ROLE_PORTS))
def test_every_role_serves_metrics(compose_deployment: Deployment, service: str) -> None:
    reply = http("GET", f"http://127.0.0.1:{ROLE_PORTS[service]}/metrics")
    assert reply.status == 200, f"{service}: {reply}"
    assert "# TYPE" in str(reply.body), f"{service}: not Prometheus' text format"


def check_loopback_only(compose: Compose, services: set[str]) -> None:
    """Every socket the containers listen on is on loopback (they are on the host's network),
    and each of ``services`` listens on something."""
    listeners = compose.listeners()
    assert services <= {service for service, _, _ in listeners}, listeners
    beyond = sorted(entry for entry in listeners if not ipaddress.ip_address(entry[1]).is_loopback)
    assert not beyond, f"listening beyond loopback: {beyond}"
    REPORT.append(
        "listening (all on loopback): "
        + ", ".join(f"{s} {a}:{p}" for s, a, p in sorted(listeners, key=lambda e: (e[0], e[2])))
    )


def test_every_container_listens_on_loopback_only(compose_deployment: Deployment) -> None:
    check_loopback_only(compose_deployment.compose, {"postgres", "rabbitmq", "proxy", *ROLE_PORTS})


def proxy_server_states() -> dict[str, str]:
    """HAProxy's view of the gateways (its statistics, CSV): server name -> UP, DOWN …"""
    reply = http("GET", "http://127.0.0.1:18405/stats;csv")
    assert reply.status == 200, f"HAProxy's statistics: {reply}"
    rows = [
        line.split(",") for line in str(reply.body).splitlines() if line.startswith("gateways,")
    ]
    return {row[1]: row[17] for row in rows if row[1] not in ("FRONTEND", "BACKEND")}


def test_the_api_survives_a_killed_gateway_and_conductor(compose_deployment: Deployment) -> None:
    compose = compose_deployment.compose
    containers = compose.containers()
    assert proxy_server_states() == {"api1": "UP", "api2": "UP"}
    for service in ("api1", "conductor1"):
        compose.docker_cmd("kill", containers[service].name)
    killed_at = time.monotonic()
    # until HAProxy takes api1 out (3 failed checks, 5 s apart) it retries on the other
    for attempt in range(20):
        reply = http("GET", f"{NOAUTH.base}/flavors", token=NOAUTH.token)
        assert reply.status == 200, f"request {attempt} after the kills: {reply}"
    image, flavor, _ = image_and_flavors(NOAUTH)
    server_id = NOAUTH.boot("compose-after-kill", image, flavor)
    server = NOAUTH.wait_for(server_id, "ACTIVE")
    REPORT.append(
        f"after killing api1 and conductor1: a server ACTIVE on {server[HOST]} "
        f"{time.monotonic() - killed_at:.1f} s after the kills"
    )
    NOAUTH.delete(server_id)
    deadline = time.monotonic() + 30
    # "UP", "UP 1/3", "UP 2/3" (failing checks), then "DOWN"
    while not (states := proxy_server_states())["api1"].startswith("DOWN"):
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states["api1"].startswith("DOWN") and states["api2"] == "UP", states
    REPORT.append(f"HAProxy took api1 out {time.monotonic() - killed_at:.1f} s after the kill")
    for attempt in range(10):
        reply = http("GET", f"{NOAUTH.base}/servers", token=NOAUTH.token)
        assert reply.status == 200, f"request {attempt} with api1 out: {reply}"
    after = compose.containers()
    REPORT.append(
        "after the kills: "
        + ", ".join(
            f"{s} {after[s].state} {after[s].health}".strip() for s in ("api1", "conductor1")
        )
    )


def keystone_token(user: str, password: str, project: str) -> tuple[str, str]:
    """A project-scoped token from the profile's Keystone, and the project's id."""
    scope = {"project": {"name": project, "domain": {"id": "default"}}}
    body: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"id": "default"}, "password": password}
                },
            },
            "scope": scope,
        }
    }
    reply = http("POST", f"{KEYSTONE}/auth/tokens", body)
    assert reply.status == 201, f"Keystone refused {user}: {reply}"
    return reply.headers["X-Subject-Token"], reply.body["token"]["project"]["id"]


def test_the_keystone_profile_serves_a_keystone_user(compose_deployment: Deployment) -> None:
    compose = compose_deployment.compose
    started = time.monotonic()
    compose.run(
        "--profile",
        "keystone",
        "up",
        "-d",
        env={"STRATUS_AUTH_STRATEGY": "keystone"},
        timeout_s=HEALTHY_WITHIN_S,
    )
    compose.wait_healthy(["keystone", "api1", "api2", "conductor1", "proxy"], timeout_s=300)
    REPORT.append(f"keystone profile: healthy {time.monotonic() - started:.1f} s after its up")
    REPORT.append("docker ps, keystone profile:\n" + compose.table())

    check_loopback_only(compose, {"keystone", "api1", "api2"})

    noauth = http("GET", f"{NOAUTH.base}/flavors", token=NOAUTH.token)
    assert noauth.status == 401, f"the gateways still take a noauth token: {noauth}"

    token, project_id = keystone_token("demo", "demo-secret", "demo")
    cloud = Cloud(project_id, token)
    image, flavor, _ = image_and_flavors(cloud)
    server_id = cloud.boot("compose-keystone", image, flavor)
    cloud.wait_for(server_id, "ACTIVE")
    cloud.delete(server_id)
