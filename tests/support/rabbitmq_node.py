"""A RabbitMQ node of the test's own, beside the machine's, that the test may stop and start.

The machine's node (``rabbit@<host>`` on 5672) is shared by everything else on the machine:
the fault suite never touches it. Its own node has a name, ports, data (mnesia), log and
configuration of its own in a temporary directory; started again with the same name and
data directory, it keeps its durable queues and their persistent messages, as a restarted
production broker does. It shares the machine's Erlang cookie (the package's wrapper runs
every RabbitMQ command as the ``rabbitmq`` user), which is harmless: nothing clusters.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.processes import descendants

SERVER = Path("/usr/sbin/rabbitmq-server")
CTL = Path("/usr/sbin/rabbitmqctl")


def installed() -> bool:
    return SERVER.exists() and CTL.exists()


def _service_user() -> str | None:
    """The ``rabbitmq`` user the package's wrapper switches to when run as root, if any."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("rabbitmq").pw_name
    except KeyError:
        return None


class RabbitNodeError(Exception):
    """The node did not start or stop; the message holds its output."""


class RabbitNode:
    """``stratus-fault-<random>@localhost`` on free ports, in a temporary directory."""

    def __init__(self, amqp_port: int, dist_port: int) -> None:
        self.name = f"stratus-fault-{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_port = amqp_port
        self.dist_port = dist_port
        self.base = Path(tempfile.mkdtemp(prefix="stratus-fault-rabbit-"))
        self.base.chmod(0o755)
        self.output = self.base / "server.out"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_files()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def _write_files(self) -> None:
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir()
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
        )
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")  # not the machine's (its NODENAME)
        user = _service_user()
        if user is not None:
            for path in [self.base, *self.base.iterdir()]:
                shutil.chown(path, user, user)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
        }

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the node and return once it accepts AMQP connections."""
        with self.output.open("ab") as out:
            self._process = subprocess.Popen(
                [str(SERVER)],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: ours to end, nobody else's
            )
        self._ctl("await_startup", timeout_s=timeout_s)

    def _ctl(self, *args: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            done = subprocess.run(
                [str(CTL), "-n", self.name, *args, "--timeout", str(int(timeout_s))],
                env=self._env(),
                capture_output=True,
                timeout=timeout_s + 15,
            )
            if done.returncode == 0:
                return
            if self._process is not None and self._process.poll() is not None:
                raise RabbitNodeError(f"the node exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RabbitNodeError(
                    f"rabbitmqctl {' '.join(args)}: {done.stderr.decode(errors='replace')}"
                    f"\n{self.log_tail()}"
                )
            time.sleep(0.5)  # not registered with epmd yet

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the node gracefully (``rabbitmqctl stop``) and wait for its process to end."""
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(RabbitNodeError, subprocess.SubprocessError):
            self._ctl("stop", timeout_s=timeout_s)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the node: the wrapper's process group and every process below it. ``su``
        starts a session of its own, so the Erlang VM (beam.smp) is not in the wrapper's
        group: killing the group alone left the broker running."""
        if self._process is None:
            return
        below = descendants(self._process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=10)
        self._wait_closed()

    def _wait_closed(self, timeout_s: float = 10.0) -> None:
        """Until nothing accepts connections on the node's AMQP port any more."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.amqp_port)) != 0:
                    return
            time.sleep(0.1)
        raise RabbitNodeError(f"the node still listens on {self.amqp_port} after SIGKILL")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        texts = [self.output, *sorted((self.base / "log").glob("*.log"))]
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}"
            for path in texts
            if path.exists()
        )
