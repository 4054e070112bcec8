"""``stratus``: one command for every role (docs/architecture.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from api_gateway.auth.exposure import UnsafeExposure
from shared import sealing
from shared.config import Settings
from shared.image_data.configured import open_image_data
from shared.logging import setup_logging
from stratus import admin, images, roles, simulate
from stratus.progress import CopyProgress
from stratus.runtime import require

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
    simulate.add_arguments(agent)
    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply schema migrations and seed the default data")
    sub.add_parser(
        "message-key",
        help="print a new random STRATUS_MESSAGE_KEY (the same on every gateway and agent)",
    )
    _image_parser(sub)
    _admin_parsers(sub)
    return parser


def _image_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    image = sub.add_parser(
        "image", help="base images in the image store (STRATUS_DATABASE_URL, image store)"
    )
    image_sub = image.add_subparsers(dest="image_command", required=True)
    load = image_sub.add_parser("import", help="copy an image file into the store and register it")
    load.add_argument("--name", required=True, help="the image's name")
    load.add_argument("--file", required=True, type=Path, help="the disk image file")
    load.add_argument("--disk-format", choices=images.DISK_FORMATS, default="qcow2")
    load.add_argument("--min-disk", type=int, default=0, metavar="GB", help="minDisk")
    load.add_argument("--min-ram", type=int, default=0, metavar="MB", help="minRam")
    load.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="image metadata (repeatable)",
    )
    load.add_argument("--owner", help="the project the image is private to (default: public)")
    load.add_argument("--id", type=uuid.UUID, help="the image id (default: a new one)")
    load.add_argument("--kernel", type=Path, help="a kernel for direct kernel boot")
    load.add_argument("--initrd", type=Path, help="its initramfs")
    load.add_argument("--cmdline", help="its kernel command line")
    guest = image_sub.add_parser(
        "import-guest", help="register the guest deploy/guest/build.sh built"
    )
    guest.add_argument(
        "--dir", type=Path, help="the built guest's directory (default: the last one built)"
    )


def _admin_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The operator's commands (stratus/admin.py), on STRATUS_DATABASE_URL."""
    host = sub.add_parser(
        "host", help="compute hosts: list, enable, disable, evacuation plans, evacuate"
    )
    host_sub = host.add_subparsers(dest="admin_command", required=True)
    host_sub.add_parser("list", help="every host: up/down, enabled, usage/capacity")
    host_sub.add_parser("enable", help="let the scheduler place servers there").add_argument("name")
    disable = host_sub.add_parser("disable", help="place no new servers there")
    disable.add_argument("name")
    disable.add_argument("--reason", help="why (shown by host list until it is enabled)")
    plan = host_sub.add_parser(
        "evacuate-plan", help="where each server of the host would go (nothing is moved)"
    )
    plan.add_argument("name")
    evacuate = host_sub.add_parser(
        "evacuate",
        help="rebuild every server of a dead host elsewhere, from its image (refused while "
        "the host is up)",
    )
    evacuate.add_argument("name")
    _flavor_parser(sub)
    quota = sub.add_parser("quota", help="a project's absolute limits and usage")
    quota_sub = quota.add_subparsers(dest="admin_command", required=True)
    quota_sub.add_parser("show", help="limits against usage").add_argument(
        "--project", required=True, help="the project (tenant) id"
    )
    sub.add_parser("status", help="hosts, servers, pending actions, dead letters, reachability")


def _flavor_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    flavor = sub.add_parser("flavor", help="flavors: list, create, delete")
    flavor_sub = flavor.add_subparsers(dest="admin_command", required=True)
    flavor_sub.add_parser("list", help="the live flavors and how many servers use each")
    create = flavor_sub.add_parser("create", help="a new flavor")
    create.add_argument("--name", required=True)
    create.add_argument("--ram", dest="flavor_ram_mb", type=int, required=True, metavar="MB")
    create.add_argument("--disk", dest="flavor_disk_gb", type=int, required=True, metavar="GB")
    create.add_argument("--vcpus", dest="flavor_vcpus", type=int, required=True)
    create.add_argument("--id", dest="flavor_id", help="the flavor id (default: a new UUID)")
    access = create.add_mutually_exclusive_group()
    access.add_argument("--public", dest="public", action="store_true", default=True)
    access.add_argument(
        "--private", dest="public", action="store_false", help="refused: no flavor access here"
    )
    delete = flavor_sub.add_parser("delete", help="servers keep running; new ones cannot use it")
    delete.add_argument("flavor", help="the flavor's id or name")


def _properties(pairs: list[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise SystemExit(f"stratus: --property {pair!r} is not KEY=VALUE")
        metadata[key] = value
    return metadata


ToImport = tuple[images.ImageFile | images.Guest, uuid.UUID | None]


def _to_import(args: argparse.Namespace) -> ToImport:
    """What ``stratus image`` was asked to import (and as which id), before anything is
    connected to: the built guest, or a file."""
    if args.image_command == "import-guest":
        directory = args.dir or images.built_guest()
        if directory is None:
            raise SystemExit("stratus: no guest built yet: run deploy/guest/build.sh")
        try:
            return images.read_guest(directory), None
        except images.ImageImportError as exc:
            raise SystemExit(f"stratus: {exc}") from exc
    image = images.ImageFile(
        name=args.name,
        path=args.file,
        disk_format=args.disk_format,
        min_disk_gb=args.min_disk,
        min_ram_mb=args.min_ram,
        metadata=_properties(args.property),
        kernel=args.kernel,
        initrd=args.initrd,
        cmdline=args.cmdline,
    )
    return image, args.id


async def _image(settings: Settings, args: argparse.Namespace) -> None:
    """``stratus image import`` / ``import-guest``: the file goes into the image store, the
    row into the database."""
    url = require(settings.database_url, "STRATUS_DATABASE_URL")
    what, image_id = _to_import(args)
    store = open_image_data(settings)
    conn = await asyncpg.connect(url)
    try:
        if isinstance(what, images.Guest):
            imported = await images.import_guest(conn, store, what, CopyProgress())
        else:
            imported = await images.import_image(
                conn,
                store,
                what,
                image_id=image_id,
                owner=args.owner,
                progress=CopyProgress(),
            )
    except images.ImageImportError as exc:
        raise SystemExit(f"stratus: {exc}") from exc
    finally:
        await conn.close()
        await store.aclose()
    state = "imported" if imported.created else "already registered"
    print(
        f"image {imported.id} ({imported.name}) {state}: "
        f"{imported.location} in the image store ({imported.size_bytes} bytes)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "message-key":  # needs no settings: it is how one makes the first
        print(sealing.generate_key())
        return
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    overrides.update(simulate.overrides(args))
    settings = Settings(**overrides)
    role_name = "db" if args.command == "db" else args.command
    setup_logging(settings.log_level, as_json=settings.log_json, role=role_name)
    if args.command == "image":
        asyncio.run(_image(settings, args))
        return
    if args.command in admin.COMMANDS:
        status = asyncio.run(admin.run(settings, args))
        if status:
            raise SystemExit(status)
        return
    commands: dict[str, Role] = {
        "up": roles.up,
        "api": roles.api,
        "conductor": roles.conductor,
        "agent": simulate.run if settings.simulate_agents else roles.agent,
        "db": roles.db_upgrade,
    }
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(commands[args.command](settings))
    except UnsafeExposure as exc:
        raise SystemExit(f"stratus: {exc}") from None


if __name__ == "__main__":
    main()
