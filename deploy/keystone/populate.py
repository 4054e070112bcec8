"""Register Stratus in a freshly bootstrapped Keystone; running it again changes nothing.

What it makes (the shape tests/support/keystone.py gives the client tests):

* project ``service`` and the gateway's service user ``stratus`` (``KEYSTONE_STRATUS_PASSWORD``)
  with the ``service`` role there: the user the gateways validate tokens as;
* project ``demo`` and its member ``demo`` (``DEMO_PASSWORD``), a user to try the cloud with;
* the catalog: ``compute`` at ``COMPUTE_PUBLIC_URL`` / ``COMPUTE_INTERNAL_URL`` (with
  ``%(tenant_id)s``) and ``image`` at the gateway's ``/image`` (``IMAGE_PUBLIC_URL`` /
  ``IMAGE_INTERNAL_URL``), since clients resolve images through the catalog.

It talks to Keystone's v3 API at ``KEYSTONE_URL`` as the bootstrapped ``admin``
(``KEYSTONE_ADMIN_PASSWORD``), with the standard library only: the image has nothing else.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

REGION = "RegionOne"


class Keystone:
    """Keystone's v3 API with an administrator's token."""

    def __init__(self, url: str, admin_password: str) -> None:
        self.url = url.rstrip("/")
        self.token = ""
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": "admin",
                            "domain": {"id": "default"},
                            "password": admin_password,
                        }
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
            }
        }
        with self._send("POST", "/auth/tokens", body) as answer:
            self.token = answer.headers["X-Subject-Token"]

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("X-Auth-Token", self.token)
        return urllib.request.urlopen(request, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        with self._send(method, path, body) as answer:
            raw = answer.read()
        return json.loads(raw) if raw else None

    def ensure(self, collection: str, fields: dict[str, str], *, key: str = "name") -> str:
        """The id of the ``collection`` member whose ``key`` is ``fields[key]``, made first
        when there is none."""
        member = collection.removesuffix("s")
        query = f"?{key}={urllib.request.quote(fields[key])}"
        found = self.call("GET", f"/{collection}{query}")[collection]
        if found:
            return str(found[0]["id"])
        if collection in ("projects", "users"):
            fields = {**fields, "domain_id": "default"}
        return str(self.call("POST", f"/{collection}", {member: fields})[member]["id"])

    def grant(self, project_id: str, user_id: str, role_id: str) -> None:
        self.call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")

    def ensure_endpoints(self, service_id: str, urls: dict[str, str]) -> None:
        """One endpoint per interface (public, internal, admin), pointing where ``urls`` say."""
        existing = self.call("GET", f"/endpoints?service_id={service_id}")["endpoints"]
        have = {e["interface"]: e for e in existing}
        for interface, url in urls.items():
            if interface in have:
                if have[interface]["url"] != url:
                    path = f"/endpoints/{have[interface]['id']}"
                    self.call("PATCH", path, {"endpoint": {"url": url}})
                continue
            endpoint = {
                "service_id": service_id,
                "interface": interface,
                "url": url,
                "region_id": REGION,
            }
            self.call("POST", "/endpoints", {"endpoint": endpoint})


def wait_for(url: str, *, for_s: float = 120.0) -> None:
    """Keystone has just been started in the background: wait until it answers."""
    deadline = time.monotonic() + for_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def populate(keystone: Keystone, env: dict[str, str]) -> None:
    roles = {role["name"]: role["id"] for role in keystone.call("GET", "/roles")["roles"]}
    if "service" not in roles:  # bootstrap makes it in current releases; older ones did not
        roles["service"] = keystone.ensure("roles", {"name": "service"})
    users = (
        ("stratus", env["KEYSTONE_STRATUS_PASSWORD"], "service", "service"),
        ("demo", env["DEMO_PASSWORD"], "demo", "member"),
    )
    for name, password, project, role in users:
        project_id = keystone.ensure("projects", {"name": project})
        user_id = keystone.ensure("users", {"name": name, "password": password})
        keystone.call("PATCH", f"/users/{user_id}", {"user": {"password": password}})
        keystone.grant(project_id, user_id, roles[role])
    services = (
        ("compute", "nova", env["COMPUTE_PUBLIC_URL"], env["COMPUTE_INTERNAL_URL"]),
        ("image", "glance", env["IMAGE_PUBLIC_URL"], env["IMAGE_INTERNAL_URL"]),
    )
    for kind, name, public, internal in services:
        service_id = keystone.ensure("services", {"type": kind, "name": name}, key="type")
        keystone.ensure_endpoints(
            service_id, {"public": public, "internal": internal, "admin": internal}
        )


def main() -> None:
    env = dict(os.environ)
    url = env.get("KEYSTONE_URL", "http://127.0.0.1:5000/v3")
    wait_for(url)
    try:
        populate(Keystone(url, env["KEYSTONE_ADMIN_PASSWORD"]), env)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"populate: Keystone answered {exc.code}: {exc.read()[:500]!r}") from exc
    print("populate: Stratus is registered in Keystone", flush=True)


if __name__ == "__main__":
    main()
