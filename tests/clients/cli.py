"""Running the clients' command-line programs (``nova``, ``openstack``) as a person would, and
reading their tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


class CommandFailed(AssertionError):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
            f"\n{result.stdout[-2000:]}"
        )
        self.stderr = result.stderr


def run(program: str, env: Mapping[str, str], *args: str, timeout_s: float = 180) -> str:
    """The standard output of ``program args`` (raises ``CommandFailed`` on a non-zero exit)."""
    command = [str(BIN / program), *args]
    result = subprocess.run(
        command, env=dict(env), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if result.returncode != 0:
        raise CommandFailed(command, result)
    return result.stdout


def openstack(clouds_yaml: Path, cloud: str, *args: str) -> str:
    """``openstack args`` as ``cloud`` of ``clouds_yaml``; the caller's ``OS_*`` are not read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "OS_CLOUD": cloud})
    return run("openstack", env, *args)


def table(output: str) -> dict[str, str]:
    """A two-column ``| Property | Value |`` table (``nova show``, ``nova boot``) as a dict;
    a value that runs over several lines is joined."""
    rows: dict[str, str] = {}
    last = ""
    for line in output.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("Property", "Field"):
            continue
        key, value = cells
        if key:
            rows[key] = value
            last = key
        elif last:
            rows[last] = f"{rows[last]}\n{value}"
    return rows


def listing(output: str) -> list[dict[str, str]]:
    """The rows of every many-column table in ``output`` (``nova list``; ``nova limits``
    prints two), each as a dict by its table's column headings: the first row after a table's
    top border."""
    rows: list[dict[str, str]] = []
    headings: list[str] | None = None
    in_table = after_border = False
    for line in output.splitlines():
        if line.startswith("+"):
            if not in_table or after_border:  # a top border (two borders: a new table)
                in_table, headings = True, None
            after_border = True
            continue
        after_border = False
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if headings is None:
            headings = cells
        elif len(cells) == len(headings):
            rows.append(dict(zip(headings, cells, strict=True)))
    return rows


def as_json(output: str) -> Any:
    return json.loads(output)


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.3)
