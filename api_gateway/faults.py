"""v2 faults (API.md §12): every error the gateway answers is one of these, as a fault body.

Domain errors are translated into faults at one edge (``from_domain``); nothing else in the
gateway builds an error response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from shared import errors


class Fault(Exception):
    """A v2 fault: ``name`` is the body's element, ``code`` the HTTP status."""

    name: ClassVar[str] = "computeFault"
    code: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        details: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        fault: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            fault["details"] = self.details
        return {self.name: fault}


class ComputeFault(Fault):
    pass


class BadRequest(Fault):
    name = "badRequest"
    code = 400


class Unauthorized(Fault):
    name = "unauthorized"
    code = 401


class Forbidden(Fault):
    name = "forbidden"
    code = 403


class ItemNotFound(Fault):
    name = "itemNotFound"
    code = 404


class BadMethod(Fault):
    name = "badMethod"
    code = 405


class ConflictingRequest(Fault):
    name = "conflictingRequest"
    code = 409


class OverLimit(Fault):
    name = "overLimit"
    code = 413


class BadMediaType(Fault):
    name = "badMediaType"
    code = 415


class NotImplementedFault(Fault):
    name = "notImplemented"
    code = 501


class ServiceUnavailable(Fault):
    name = "serviceUnavailable"
    code = 503


_BY_STATUS: dict[int, type[Fault]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        ItemNotFound,
        BadMethod,
        ConflictingRequest,
        OverLimit,
        BadMediaType,
        NotImplementedFault,
        ServiceUnavailable,
    )
}


def for_status(status: int, message: str) -> Fault:
    """The fault the reference implementation chose for an HTTP status."""
    return _BY_STATUS.get(status, ComputeFault)(message)


def from_domain(error: errors.StratusError) -> Fault:
    """Translate a domain error into the fault the API answers with."""
    if isinstance(error, errors.NotFound):
        return ItemNotFound(str(error))
    if isinstance(error, errors.Invalid):
        return BadRequest(str(error))
    if isinstance(error, errors.Conflict):
        return ConflictingRequest(str(error))
    if isinstance(error, errors.ServiceUnavailable):
        return ServiceUnavailable(str(error), headers={"Retry-After": "5"})
    return ComputeFault(str(error))
