"""Who may do what: one table for every operation on servers, and the server lock.

Each operation has a rule: ``admin`` (the caller has the admin role), ``admin_or_owner``
(an administrator, or a member of the project that owns the server) or ``nobody`` (turned
off, for administrators too). The defaults are nova 2013.1's ``etc/nova/policy.json`` (guide
3.1): the server operations of chapter 2 and pause, unpause, suspend, resume, createBackup
are the owner's; migrate, resetNetwork, injectNetworkInfo, os-migrateLive and os-resetState
are the administrator's. lock and unlock are the owner's, as since nova 2013.2 (2013.1 had
them the administrator's: ``{"lock": "admin", "unlock": "admin"}`` brings that back), and
``unlock_override`` (nova's name: lifting a lock the other kind of caller holds, an owner an
administrator's or an administrator an owner's) is the administrator's. Operators change
rules with ``STRATUS_POLICY`` (a JSON object ``{"operation": "rule"}``, inline or in a
file), checked when the gateway starts.

The same table says which operations a *locked* server refuses from users who are not
administrators (guide 3.1 `lock`; docs/architecture.md, *State*): the lock is part of "who
may", so it lives here, in one place, and is not something an operator can configure away.

Controllers apply the rules (``authorize``, ``permitted``), once per request and before the
domain layer runs; the domain layer applies the lock (``check_unlocked``), which it can only
judge with the server's row locked.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from aiohttp import web

from api_gateway import keys
from api_gateway.context import RequestContext
from shared.db.records import LockedServer
from shared.errors import Conflict, NotPermitted


class Rule(StrEnum):
    ADMIN = "admin"
    ADMIN_OR_OWNER = "admin_or_owner"
    NOBODY = "nobody"


#: nova's spellings of the same rules, accepted in STRATUS_POLICY for operators who bring
#: their policy.json habits along
_NOVA_SPELLINGS = {
    "rule:admin_api": Rule.ADMIN,
    "is_admin:True": Rule.ADMIN,
    "rule:admin_or_owner": Rule.ADMIN_OR_OWNER,
    "!": Rule.NOBODY,
}


@dataclass(frozen=True)
class Operation:
    rule: Rule
    #: a locked server refuses it to anyone but an administrator (409)
    refused_when_locked: bool = False


_OWNER = Operation(Rule.ADMIN_OR_OWNER)
_OWNER_UNLESS_LOCKED = Operation(Rule.ADMIN_OR_OWNER, refused_when_locked=True)
_ADMIN = Operation(Rule.ADMIN)
_ADMIN_UNLESS_LOCKED = Operation(Rule.ADMIN, refused_when_locked=True)

#: Every operation, by name: server actions by their action name (the body's key), the other
#: server operations as ``servers:<verb>``, extension members and resources by alias.
OPERATIONS: Mapping[str, Operation] = {
    # chapter 2: servers
    "servers:create": _OWNER,
    "servers:update": _OWNER_UNLESS_LOCKED,
    "servers:delete": _OWNER_UNLESS_LOCKED,
    "servers:metadata": _OWNER_UNLESS_LOCKED,  # set, update, set item, delete item
    # chapter 2: actions (a snapshot changes nothing on the server: a lock allows it, as in nova)
    "changePassword": _OWNER_UNLESS_LOCKED,
    "reboot": _OWNER_UNLESS_LOCKED,
    "rebuild": _OWNER_UNLESS_LOCKED,
    "resize": _OWNER_UNLESS_LOCKED,
    "confirmResize": _OWNER_UNLESS_LOCKED,
    "revertResize": _OWNER_UNLESS_LOCKED,
    "createImage": _OWNER,
    # chapter 3: admin actions
    "pause": _OWNER_UNLESS_LOCKED,
    "unpause": _OWNER_UNLESS_LOCKED,
    "suspend": _OWNER_UNLESS_LOCKED,
    "resume": _OWNER_UNLESS_LOCKED,
    "createBackup": _OWNER,
    "migrate": _ADMIN_UNLESS_LOCKED,
    "resetNetwork": _ADMIN_UNLESS_LOCKED,
    "injectNetworkInfo": _ADMIN_UNLESS_LOCKED,
    # the owner's since nova 2013.2; an owner's lock is lifted by the member who took it or
    # an administrator, an administrator's by an administrator (unlock_override)
    "lock": _OWNER,
    "unlock": _OWNER,
    "unlock_override": _ADMIN,
    "os-migrateLive": _ADMIN_UNLESS_LOCKED,
    "os-resetState": _ADMIN_UNLESS_LOCKED,
    # nova's os-evacuate (compute_extension:evacuate: rule:admin_api)
    "evacuate": _ADMIN,
    # nova's os-server-start-stop extension (compute:stop, compute:start: the owner's)
    "os-stop": _OWNER_UNLESS_LOCKED,
    "os-start": _OWNER_UNLESS_LOCKED,
    # extensions: members of the server representation, and the audit trail
    "OS-EXT-STS": _OWNER,
    "OS-EXT-SRV-ATTR": _ADMIN,
    "os-instance-actions": _OWNER,
    "os-instance-actions:events": _ADMIN,
    # nova's os-consoles (compute_extension:consoles): the owner's; a lock does not refuse a
    # console, which changes nothing on the server (nova allowed it on locked servers)
    "os-consoles": _OWNER,
    # nova's os-console-output (compute_extension:console_output): the owner's, and a lock
    # does not refuse it either (it only reads the guest's log)
    "os-console-output": _OWNER,
    # extensions of the cloud rather than of a server (nova 2013.1: rule:admin_api)
    "os-flavor-extra-specs:write": _ADMIN,  # reads are everyone's
    "os-hosts": _ADMIN,
    "os-migrations": _ADMIN,
    # nova 2013.1's os-quota-sets: a project's quotas are shown to its members and to
    # administrators; only administrators change them
    "os-quota-sets:show": _OWNER,
    "os-quota-sets:update": _ADMIN,
    "os-services": _ADMIN,
}

#: Actions recorded under another name than the operation they are (a HARD reboot).
_RECORDED_AS = {"reboot_hard": "reboot"}


class PolicyError(ValueError):
    """STRATUS_POLICY is not a valid policy; the message says what is wrong."""


class Policy:
    """The rule of every operation: the defaults, with the operator's overrides."""

    def __init__(self, overrides: Mapping[str, Rule] | None = None) -> None:
        self.rules = {name: op.rule for name, op in OPERATIONS.items()} | dict(overrides or {})

    @classmethod
    def parse(cls, setting: str) -> Policy:
        """The policy a STRATUS_POLICY value describes: empty for the defaults, a JSON object
        (``{"lock": "admin_or_owner"}``), or the path of a file holding one."""
        text = setting.strip()
        if not text:
            return cls()
        if not text.startswith(("{", "[")):  # JSON inline, else the path of a file
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as exc:
                raise PolicyError(f"STRATUS_POLICY: cannot read the file {text}: {exc}") from None
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"STRATUS_POLICY is not valid JSON: {exc}") from None
        return cls(_overrides(document))

    def allows(self, ctx: RequestContext, operation: str, *, project_id: str | None = None) -> bool:
        """May the caller do ``operation`` on a resource of ``project_id`` (default: the
        project the caller acts in)?"""
        rule = self.rules[operation]
        if rule is Rule.NOBODY:
            return False
        if ctx.is_admin:
            return True
        owner = project_id if project_id is not None else ctx.project_id
        return rule is Rule.ADMIN_OR_OWNER and owner == ctx.project_id

    def enforce(
        self, ctx: RequestContext, operation: str, *, project_id: str | None = None
    ) -> None:
        """403 forbidden unless ``allows``."""
        if not self.allows(ctx, operation, project_id=project_id):
            raise NotPermitted(f"Policy doesn't allow {operation} to be performed.")


def _overrides(document: Any) -> dict[str, Rule]:
    if not isinstance(document, dict):
        raise PolicyError("STRATUS_POLICY must be a JSON object of operation -> rule")
    rules: dict[str, Rule] = {}
    for name, value in document.items():
        if name not in OPERATIONS:
            known = ", ".join(sorted(OPERATIONS))
            raise PolicyError(f"STRATUS_POLICY: unknown operation {name!r} (known: {known})")
        rule = _rule(value)
        if rule is None:
            allowed = ", ".join([*Rule, *_NOVA_SPELLINGS])
            raise PolicyError(
                f"STRATUS_POLICY: {name!r} has the unknown rule {value!r} (rules: {allowed})"
            )
        rules[name] = rule
    return rules


def _rule(value: object) -> Rule | None:
    if not isinstance(value, str):
        return None
    if value in _NOVA_SPELLINGS:
        return _NOVA_SPELLINGS[value]
    try:
        return Rule(value)
    except ValueError:
        return None


@functools.lru_cache(maxsize=8)
def configured(setting: str) -> Policy:
    """The policy of a STRATUS_POLICY value, parsed once per process (a file is read when
    the gateway starts; change it and restart)."""
    return Policy.parse(setting)


def operation_of(action: str) -> str:
    """The operation an action recorded as ``action`` is."""
    return _RECORDED_AS.get(action, action)


def check_unlocked(ctx: RequestContext, operation: str, row: LockedServer) -> None:
    """409 when ``row``'s server is locked and ``operation`` is one a lock refuses to the
    caller (anyone but an administrator)."""
    if row.locked and not ctx.is_admin and OPERATIONS[operation].refused_when_locked:
        raise Conflict(f"Instance {row.id} is locked")


def authorize(request: web.Request, operation: str) -> None:
    """403 forbidden unless the configured policy lets the request's caller do ``operation``."""
    configured(request.app[keys.SETTINGS].policy).enforce(keys.context(request), operation)


def permitted(request: web.Request, operation: str) -> bool:
    """May the request's caller do ``operation`` (see something only some may see)?"""
    return configured(request.app[keys.SETTINGS].policy).allows(keys.context(request), operation)
