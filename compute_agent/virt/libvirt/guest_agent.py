"""The QEMU guest agent, as the driver uses it: set a password, write a file in the guest.

The agent is a program in the guest (qemu-guest-agent, or anything speaking its protocol)
listening on the domain's ``org.qemu.guest_agent.0`` channel; libvirt relays commands to it.
A guest without one cannot take a password or a file: every operation here then raises a
``DriverError`` that says so (the server's fault), and changes nothing. libvirt's test
hypervisor has no guest agents at all: ``write_file`` returns False there (``NoGuestAgents``
tells the caller), while it does take passwords (for running domains).
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
from typing import Any

import libvirt

from compute_agent.virt.driver import DriverError

log = logging.getLogger(__name__)

#: how long the guest agent may take to answer one command
TIMEOUT_S = 10

#: libvirt's errors when no agent answers: not running in the guest, or no channel at all
_NO_AGENT = {
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE: "no guest agent answers in the guest (qemu-guest-agent)",
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED: "the server has no guest agent channel",
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: "the server has no guest agent channel",
}


class NoGuestAgents(Exception):
    """This hypervisor relays nothing to guest agents (libvirt's test one)."""


def _explain(exc: libvirt.libvirtError, what: str, name: str) -> DriverError:
    reason = _NO_AGENT.get(exc.get_error_code())
    if reason is not None:
        return DriverError(f"cannot {what} in {name}: {reason}")
    return DriverError(f"cannot {what} in {name}: {exc}")


def _require_running(dom: Any, what: str) -> None:
    if not dom.isActive():
        raise DriverError(f"cannot {what} in {dom.name()}: it is not running")


def set_password(dom: Any, user: str, password: str) -> None:
    """Set ``user``'s password in the running guest."""
    what = f"set the password of {user}"
    _require_running(dom, what)
    try:
        dom.setUserPassword(user, password, 0)
    except libvirt.libvirtError as exc:
        raise _explain(exc, what, dom.name()) from exc


def command(dom: Any, execute: str, arguments: dict[str, Any] | None = None) -> Any:
    """The ``return`` of the agent command ``execute``; ``NoGuestAgents`` on a hypervisor
    without them, ``libvirt.libvirtError`` otherwise."""
    qemu: Any = importlib.import_module("libvirt_qemu")
    request: dict[str, Any] = {"execute": execute}
    if arguments is not None:
        request["arguments"] = arguments
    try:
        reply = qemu.qemuAgentCommand(dom, json.dumps(request), TIMEOUT_S, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            raise NoGuestAgents(str(exc)) from exc
        raise
    return json.loads(reply).get("return") if reply else None


def write_file(dom: Any, path: str, content: bytes) -> None:
    """Write ``content`` as the guest's file ``path`` (replacing it). ``NoGuestAgents`` on a
    hypervisor without guest agents; ``DriverError`` when the guest cannot."""
    what = f"write {path}"
    _require_running(dom, what)
    try:
        handle = command(dom, "guest-file-open", {"path": path, "mode": "w"})
        try:
            command(
                dom,
                "guest-file-write",
                {"handle": handle, "buf-b64": base64.b64encode(content).decode()},
            )
        finally:
            command(dom, "guest-file-close", {"handle": handle})
    except libvirt.libvirtError as exc:
        raise _explain(exc, what, dom.name()) from exc
    log.info("wrote %s in %s through its guest agent", path, dom.name())
