"""The server actions, in one table: what ``POST /servers/{id}/action`` can do.

Each entry names an action as the body's single key does, the operation the policy rules
(api_gateway/auth/policy.py), its schema (the body's value -> the plan's arguments, or 400)
and its plan (actions/plan.py). The dispatcher (api_gateway/controllers/server_actions.py)
validates, applies the policy, runs the plan and answers ``status``, unless the controller
has a response of its own for the action (a body or a ``Location``). Adding an action is
adding a plan and a line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from api_gateway.compute.actions import database, host, live_migration, resize, snapshots
from api_gateway.compute.actions.evacuate import Evacuate
from api_gateway.compute.actions.plan import ActionPlan
from api_gateway.compute.actions.rebuild import Rebuild
from api_gateway.schemas import admin_actions as admin_schema
from api_gateway.schemas import server_actions as schema
from api_gateway.schemas.common import validator
from api_gateway.schemas.live_migration import live_migrate

A = TypeVar("A")
P = TypeVar("P", bound=ActionPlan[Any])


@dataclass(frozen=True)
class ServerAction(Generic[A, P]):
    """How the dispatcher runs one action."""

    #: the body's key (the XML root element)
    name: str
    #: the operation whose rule decides who may (403 otherwise)
    policy: str
    #: the action's value in the body -> the plan's arguments (400 for a bad one)
    schema: Callable[[Any], A]
    #: the plan that carries out these arguments
    plan: Callable[[A], P]
    #: the answer when the controller has no response of its own for the action
    status: int = 202


def action(
    name: str, schema: Callable[[Any], A], plan: Callable[[A], P], *, status: int = 202
) -> ServerAction[A, P]:
    """An action whose policy operation is its name (every one, today)."""
    return ServerAction(name, name, schema, plan, status)


def plain(
    name: str,
    plan: Callable[[], P],
    *,
    status: int = 202,
    arguments: Callable[[Any], None] = schema.no_arguments,
) -> ServerAction[None, P]:
    """An action without parameters: ``null`` or no members, however sent, mean the same
    (``arguments`` refuses anything else)."""

    def make(_: None) -> P:
        return plan()

    return action(name, arguments, make, status=status)


class ActionTable:
    """Action name -> entry. A name twice is a programming error."""

    def __init__(self, *actions: ServerAction[Any, Any]) -> None:
        self._actions: dict[str, ServerAction[Any, Any]] = {}
        for entry in actions:
            if entry.name in self._actions:
                raise ValueError(f"the server action {entry.name!r} is registered twice")
            self._actions[entry.name] = entry

    def get(self, name: str) -> ServerAction[Any, Any] | None:
        return self._actions.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._actions)

    def __iter__(self) -> Iterator[ServerAction[Any, Any]]:
        return iter(self._actions.values())


# chapter 2: the core actions (guide 2.3)
CHANGE_PASSWORD = action("changePassword", validator(schema.ChangePassword), host.ChangePassword)
REBOOT = action("reboot", schema.reboot, host.Reboot)
REBUILD = action("rebuild", validator(schema.Rebuild), Rebuild)
RESIZE = action("resize", validator(schema.Resize), resize.Resize)
CONFIRM_RESIZE = plain("confirmResize", resize.ConfirmResize, status=204)
REVERT_RESIZE = plain("revertResize", resize.RevertResize)
CREATE_IMAGE = action("createImage", validator(schema.CreateImage), snapshots.CreateImage)
# chapter 3: the admin actions (guide 3.1)
PAUSE = plain("pause", host.Pause)
UNPAUSE = plain("unpause", host.Unpause)
SUSPEND = plain("suspend", host.Suspend)
RESUME = plain("resume", host.Resume)
MIGRATE = plain("migrate", resize.Migrate, arguments=admin_schema.migrate)
RESET_NETWORK = plain("resetNetwork", host.ResetNetwork)
INJECT_NETWORK_INFO = plain("injectNetworkInfo", host.InjectNetworkInfo)
LOCK = plain("lock", database.Lock)
UNLOCK = plain("unlock", database.Unlock)
CREATE_BACKUP = action("createBackup", admin_schema.create_backup, snapshots.CreateBackup)
RESET_STATE = action("os-resetState", admin_schema.reset_state, database.ResetState)
LIVE_MIGRATE = action("os-migrateLive", live_migrate, live_migration.LiveMigration)
# nova's os-evacuate extension: 200 with the new password (the controller's response)
EVACUATE = action("evacuate", admin_schema.evacuate, Evacuate)
# nova's os-server-start-stop extension
STOP = plain("os-stop", host.Stop)
START = plain("os-start", host.Start)

ACTION_TABLE = ActionTable(
    CHANGE_PASSWORD,
    REBOOT,
    REBUILD,
    RESIZE,
    CONFIRM_RESIZE,
    REVERT_RESIZE,
    CREATE_IMAGE,
    PAUSE,
    UNPAUSE,
    SUSPEND,
    RESUME,
    MIGRATE,
    RESET_NETWORK,
    INJECT_NETWORK_INFO,
    LOCK,
    UNLOCK,
    CREATE_BACKUP,
    RESET_STATE,
    LIVE_MIGRATE,
    EVACUATE,
    STOP,
    START,
)
