"""A throw-away Ceph cluster with its S3 gateway (radosgw), from Debian's packages: the real
S3 server the S3 image store is tested against, where a mock of one would prove nothing.

Modelled on Ceph's own ``src/vstart.sh``, cut to what S3 needs: one monitor, one OSD whose
object store is memory (``memstore``: no disk to prepare, nothing left behind), pools of
one replica with few placement groups (radosgw creates about eight pools; the default 32
groups each would pass the per-OSD limit), and radosgw on a free port with its ``beast``
frontend. No manager daemon: pools, placement groups and S3 work without one, only
statistics do not. Authentication stays on (cephx, with keys made for the cluster): with
``auth ... required = none`` a client's first command to the monitor sometimes went out
before the client knew the cluster (``handle_command on fsid 00000000-… != <fsid>``), and
the OSD or ``ceph`` command failed, about one start in three.
Every daemon runs in the foreground as a child of this process, so each is stopped by its
pid and nothing outlives the session; it all takes about ten seconds to start.

``python -m tests.support.radosgw`` starts one and prints ``endpoint access_key secret_key``,
for trying things by hand; Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

#: what a machine needs, and how a Debian one gets it (tests/support/missing.py's style)
RADOSGW = (
    "radosgw and a Ceph monitor and OSD to run it on (a throw-away S3 server): apt-get "
    "install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common"
)
PROGRAMS = (
    "ceph-mon",
    "ceph-osd",
    "radosgw",
    "radosgw-admin",
    "ceph",
    "monmaptool",
    "ceph-authtool",
)


def missing_programs() -> list[str]:
    """The programs a cluster needs that this machine lacks (nothing: it can run one)."""
    return [program for program in PROGRAMS if shutil.which(program) is None]


class RadosGatewayError(Exception):
    """A daemon did not start or a command failed; the message holds the daemons' logs."""


@dataclass(frozen=True)
class S3Account:
    """Where the gateway answers, and a user's keys to it."""

    endpoint: str
    access_key: str
    secret_key: str
    #: any region signs requests radosgw accepts; this is what its zonegroup is called
    region: str = "default"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RadosGateway:
    """A one-OSD cluster and radosgw in a temporary directory; ``start``, then ``close``."""

    def __init__(self, *, start_timeout_s: float = 120.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.base = Path(tempfile.mkdtemp(prefix="stratus-radosgw-"))
        self.conf = self.base / "ceph.conf"
        self.port = _free_port()
        self.daemons: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.account: S3Account | None = None

    def start(self) -> S3Account:
        """Monitor, OSD, gateway and an S3 user; the user's account once the gateway answers."""
        deadline = time.monotonic() + self.start_timeout_s
        mon_port = _free_port()
        fsid = str(uuid.uuid4())
        for name in ("mon.a", "osd.0", "rgw", "run", "log"):
            (self.base / name).mkdir()
        self.conf.write_text(_config(self.base, fsid, mon_port, self.port))
        keyring = self.base / "keyring"
        for entity, caps in _KEYS.items():
            create = ["--create-keyring"] if entity == "mon." else []
            capabilities = [arg for service, cap in caps for arg in ("--cap", service, cap)]
            self._run(
                "ceph-authtool", str(keyring), *create, "--gen-key", "-n", entity, *capabilities
            )
        monmap = self.base / "monmap"
        self._run(
            "monmaptool", "--create", "--fsid", fsid, "--addv", "a",
            f"[v1:127.0.0.1:{mon_port}]", str(monmap),
        )  # fmt: skip
        self._run(
            "ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap), "--keyring", str(keyring)
        )
        self._daemon("mon.a", "ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        # waits (up to its connect timeout) for the monitor to form its quorum of one
        self._run("ceph", "--connect-timeout", "60", "osd", "new", osd_uuid, timeout=90)
        self._run("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._run("ceph", "osd", "crush", "add", "osd.0", "1", "root=default", "host=localhost")
        self._daemon("osd.0", "ceph-osd", "-i", "0")
        self._daemon("client.rgw", "radosgw", "-n", "client.rgw")
        endpoint = f"http://127.0.0.1:{self.port}"
        self._wait_answering(endpoint, deadline)
        access_key = f"STRATUS{secrets.token_hex(6).upper()}"
        secret_key = secrets.token_urlsafe(30)
        self._run(
            "radosgw-admin", "user", "create", "--uid", "stratus", "--display-name", "stratus",
            "--access-key", access_key, "--secret-key", secret_key,
        )  # fmt: skip
        self.account = S3Account(endpoint, access_key, secret_key)
        return self.account

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        try:
            done = subprocess.run(
                [program, "-c", str(self.conf), *args], capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise RadosGatewayError(
                f"{program} {' '.join(args[:2])} did not finish in {timeout} s\n{self.logs()}"
            ) from exc
        if done.returncode != 0:
            raise RadosGatewayError(
                f"{program} {' '.join(args[:2])} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')[-2000:]}\n{self.logs()}"
            )

    def _daemon(self, name: str, program: str, *args: str) -> None:
        """``program`` in the foreground (``-f``): our child, whose pid we hold."""
        out = (self.base / "log" / f"{name}.out").open("wb")
        process = subprocess.Popen(
            [program, "-f", "-c", str(self.conf), *args], stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        self.daemons.append((name, process))

    def _wait_answering(self, endpoint: str, deadline: float) -> None:
        """Until the gateway answers (it first creates its pools, which takes seconds)."""
        while True:
            for name, process in self.daemons:
                if process.poll() is not None:
                    raise RadosGatewayError(
                        f"{name} exited ({process.returncode}) while starting\n{self.logs()}"
                    )
            try:
                with urllib.request.urlopen(endpoint, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RadosGatewayError(f"radosgw never answered at {endpoint}\n{self.logs()}")
            time.sleep(0.2)

    def logs(self, chars: int = 3000) -> str:
        """The end of every daemon's log, for a failure's message."""
        parts = []
        for path in sorted((self.base / "log").glob("*")):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop the daemons (the gateway first, which would otherwise wait on the OSD) and
        remove their files; the cluster lives in memory, so nothing else remains."""
        for _, process in reversed(self.daemons):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.daemons.clear()
        shutil.rmtree(self.base, ignore_errors=True)


#: every key of the cluster, with its capabilities, in the one keyring every process reads
#: (the monitor takes them all into its database when it is made)
_KEYS: dict[str, list[tuple[str, str]]] = {
    "mon.": [("mon", "allow *")],
    "client.admin": [("mon", "allow *"), ("osd", "allow *"), ("mgr", "allow *")],
    "osd.0": [("mon", "allow profile osd"), ("osd", "allow *"), ("mgr", "allow profile osd")],
    "client.rgw": [("mon", "allow rw"), ("osd", "allow rwx"), ("mgr", "allow rw")],
}


def _config(base: Path, fsid: str, mon_port: int, rgw_port: int) -> str:
    return f"""\
[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{mon_port}
public addr = 127.0.0.1
ms bind ipv6 = false
run dir = {base}/run
log file = {base}/log/$name.log
keyring = {base}/keyring
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
mon warn on msgr2 not enabled = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
# a nearly full /tmp must not stop the monitor of a cluster that keeps nothing on disk
mon data avail warn = 0
mon data avail crit = 0

[mon]
mon data = {base}/mon.$id
admin socket = {base}/run/$name.asok

[osd]
osd data = {base}/osd.$id
# the start places the OSD in the CRUSH map before the OSD runs, rather than the OSD by a
# command of its own as it starts (which, without cephx, failed with "mon_cmd_maybe_osd_create
# fail: 'wrong fsid'" and the OSD exited): one race fewer
osd crush update on start = false
osd class update on start = false
osd objectstore = memstore
memstore device bytes = 1073741824
admin socket = {base}/run/$name.asok

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {base}/rgw
rgw thread pool size = 32
admin socket = {base}/run/$name.asok
"""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    gateway = RadosGateway()
    try:
        account = gateway.start()
        print(account.endpoint, account.access_key, account.secret_key, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    finally:
        gateway.close()
