"""A real Keystone for the client tests: the ``keystone`` package from PyPI in a virtualenv of
its own (built on first use, then cached), on sqlite, served by gunicorn on 127.0.0.1, with
the projects, users and catalog a small cloud has.

The virtualenv lives in ``~/.cache/stratus/keystone-venv-<version>`` (``STRATUS_CACHE_DIR``
moves it), so only the first run on a machine pays for its installation (about a minute);
setting Keystone up afterwards takes seconds: ``keystone-manage db_sync``, ``fernet_setup``,
``credential_setup``, ``bootstrap``, then the API creates the rest (``populate``).

oslo.config parses ``sys.argv`` when Keystone's WSGI application is loaded, and under gunicorn
those are gunicorn's arguments: a small wrapper module clears them and names the
configuration file before it imports ``keystone.wsgi.api``.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests.support import missing

KEYSTONE_VERSION = "30.0.0"
REGION = "RegionOne"
ADMIN_PASSWORD = "admin-secret"

_WRAPPER = '''"""Keystone's WSGI application; oslo.config must not read gunicorn's argv."""
import os
import sys

sys.argv = sys.argv[:1]
os.environ["OS_KEYSTONE_CONFIG_FILES"] = {config!r}

from keystone.wsgi.api import application  # noqa: E402,F401
'''

_CONFIG = """[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///{state}/keystone.db
[fernet_tokens]
key_repository = {state}/fernet-keys
[fernet_receipts]
key_repository = {state}/fernet-keys
[credential]
key_repository = {state}/credential-keys
[token]
expiration = 3600
"""


def cache_dir() -> Path:
    return Path(os.environ.get("STRATUS_CACHE_DIR", Path.home() / ".cache" / "stratus"))


def keystone_venv() -> Path:
    """The virtualenv with Keystone and gunicorn, built once per machine (a lock keeps two
    test runs from building it together; a build that did not finish is started again)."""
    venv = cache_dir() / f"keystone-venv-{KEYSTONE_VERSION}"
    done = venv / ".complete"
    if done.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"keystone=={KEYSTONE_VERSION}",
                "gunicorn",
            ],
            check=True,
        )
        done.touch()
    return venv


@dataclass
class User:
    name: str
    password: str
    project: str


@dataclass
class Keystone:
    """A running Keystone and what ``populate`` put in it."""

    url: str
    users: dict[str, User] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)  # name -> id

    def session(self, user: str) -> ks_session.Session:
        """A keystoneauth session of ``user``, scoped to its project."""
        who = self.users[user]
        auth = v3.Password(
            auth_url=self.url,
            username=who.name,
            password=who.password,
            project_name=who.project,
            user_domain_id="default",
            project_domain_id="default",
        )
        return ks_session.Session(auth=auth)

    def environment(self, user: str) -> dict[str, str]:
        """The ``OS_*`` variables that point a command-line client at this cloud as ``user``."""
        who = self.users[user]
        return {
            "OS_AUTH_URL": self.url,
            "OS_AUTH_TYPE": "password",
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": who.name,
            "OS_PASSWORD": who.password,
            "OS_PROJECT_NAME": who.project,
            "OS_USER_DOMAIN_ID": "default",
            "OS_PROJECT_DOMAIN_ID": "default",
            "OS_REGION_NAME": REGION,
            "OS_INTERFACE": "public",
        }


@contextlib.contextmanager
def running_keystone(state: Path, port: int) -> Iterator[Keystone]:
    """Keystone on ``127.0.0.1:port`` with its data under ``state``, bootstrapped with the
    ``admin`` user (password ``ADMIN_PASSWORD``) of the ``admin`` project."""
    try:
        venv = keystone_venv()
    except (OSError, subprocess.CalledProcessError) as exc:
        missing.unavailable(
            missing.KEYSTONE.format(error=exc), required_by="STRATUS_REQUIRE_KEYSTONE"
        )
    url = f"http://127.0.0.1:{port}/v3"
    config = state / "keystone.conf"
    config.write_text(_CONFIG.format(state=state))
    (state / "stratus_keystone_wsgi.py").write_text(_WRAPPER.format(config=str(config)))
    log = state / "keystone.log"

    def manage(*args: str) -> None:
        command = [str(venv / "bin" / "keystone-manage"), "--config-file", str(config), *args]
        with log.open("ab") as out:
            subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT)

    manage("db_sync")
    for repository in ("fernet_setup", "credential_setup"):
        manage(repository, "--keystone-user", _user(), "--keystone-group", _group())
    manage(
        "bootstrap",
        "--bootstrap-password",
        ADMIN_PASSWORD,
        "--bootstrap-admin-url",
        url,
        "--bootstrap-public-url",
        url,
        "--bootstrap-internal-url",
        url,
        "--bootstrap-region-id",
        REGION,
    )
    with log.open("ab") as out:
        server = subprocess.Popen(
            [
                str(venv / "bin" / "gunicorn"),
                "--no-control-socket",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--chdir",
                str(state),
                "stratus_keystone_wsgi:application",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(url, server, log)
        keystone = Keystone(url)
        keystone.users["admin"] = User("admin", ADMIN_PASSWORD, "admin")
        yield keystone
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def _group() -> str:
    return grp.getgrgid(os.getgid()).gr_name


def _wait_until_serving(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"Keystone exited:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"Keystone never answered:\n{log.read_text()[-4000:]}")


# --- the cloud's projects, users and catalog ---------------------------------------------------


def populate(keystone: Keystone, compute_url: str, image_url: str) -> None:
    """Projects ``demo``, ``alt_demo`` and ``service``; members ``demo`` and ``alt_demo`` of
    their projects; ``stratus``, the gateway's service user, with the ``service`` role in
    ``service``; the compute service at ``compute_url`` (with ``%(tenant_id)s``) and the
    image service at ``image_url``."""
    admin = _Admin(keystone)
    roles = {role["name"]: role["id"] for role in admin.get("/roles")["roles"]}
    for project in ("demo", "alt_demo", "service"):
        keystone.projects[project] = admin.create("projects", {"name": project})
    for name, project, role in (
        ("demo", "demo", "member"),
        ("alt_demo", "alt_demo", "member"),
        ("stratus", "service", "service"),
    ):
        password = f"{name}-secret"
        user_id = admin.create("users", {"name": name, "password": password})
        admin.put(f"/projects/{keystone.projects[project]}/users/{user_id}/roles/{roles[role]}")
        keystone.users[name] = User(name, password, project)
    # the administrator acts in demo's project too, as operators do (a token scoped to it)
    admin.put(f"/projects/{keystone.projects['demo']}/users/{admin.user_id}/roles/{roles['admin']}")
    keystone.users["admin_in_demo"] = User("admin", ADMIN_PASSWORD, "demo")
    for kind, name, url in (("compute", "nova", compute_url), ("image", "glance", image_url)):
        service_id = admin.create("services", {"type": kind, "name": name})
        for interface in ("public", "internal", "admin"):
            admin.create(
                "endpoints",
                {
                    "service_id": service_id,
                    "interface": interface,
                    "url": url,
                    "region_id": REGION,
                },
            )


class _Admin:
    """Keystone's v3 API as the bootstrapped administrator."""

    def __init__(self, keystone: Keystone) -> None:
        self.url = keystone.url
        self.session = keystone.session("admin")
        self.user_id = str(self.session.get_user_id())

    def get(self, path: str) -> Any:
        return self.session.get(f"{self.url}{path}").json()

    def put(self, path: str) -> None:
        self.session.put(f"{self.url}{path}")

    def create(self, collection: str, fields: dict[str, str]) -> str:
        """POST a new ``collection`` member (domain ``default`` where one applies); its id."""
        member = collection.removesuffix("s")
        if collection in ("projects", "users"):
            fields = {**fields, "domain_id": "default"}
        body = self.session.post(f"{self.url}/{collection}", json={member: fields}).json()
        return str(body[member]["id"])
