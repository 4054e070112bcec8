"""Run ``stratus`` roles as real processes, the way an operator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

STRATUS = str(Path(sys.executable).parent / "stratus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Processes:
    """Started roles; their output goes to files so a failing test can show it."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, **env}
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [STRATUS, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.running.append((name, process))
        return process

    def run(self, *args: str) -> None:
        subprocess.run([STRATUS, *args], env=self.env, check=True, capture_output=True)

    def stop_all(self) -> None:
        for _, process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.log_dir.glob("*.log"))
        )
