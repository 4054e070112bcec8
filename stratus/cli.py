"""``stratus``: one command for every role (DESIGN.md §2)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from shared.config import Settings
from shared.logging import setup_logging
from stratus import roles

Role = Callable[[Settings], Coroutine[Any, Any, None]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stratus",
        description="OpenStack Compute API v2: gateway, conductor and compute agent.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run everything in one process (embedded defaults)")
    sub.add_parser("api", help="run an API gateway")
    sub.add_parser("conductor", help="run a conductor")
    agent = sub.add_parser("agent", help="run the compute agent of one hypervisor host")
    agent.add_argument("--host", help="this host's name (default: STRATUS_HOST or the hostname)")
    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply schema migrations and seed the default data")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    settings = Settings(**overrides)
    role_name = "db" if args.command == "db" else args.command
    setup_logging(settings.log_level, as_json=settings.log_json, role=role_name)
    commands: dict[str, Role] = {
        "up": roles.up,
        "api": roles.api,
        "conductor": roles.conductor,
        "agent": roles.agent,
        "db": roles.db_upgrade,
    }
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(commands[args.command](settings))


if __name__ == "__main__":
    main()
