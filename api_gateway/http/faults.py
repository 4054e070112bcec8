"""v2 faults (guide 1.9): every error the gateway answers is one of these, as a fault body.

Domain errors are translated into faults at one edge (``from_domain``); nothing else in the
gateway builds an error response.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
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
    """With a ``Retry-After`` header (whole seconds), the body repeats it as ``retryAfter``:
    the moment the client may retry, as an XML-Schema dateTime (Ex 1.46/1.47, guide 1.9.1)."""

    name = "overLimit"
    code = 413

    def body(self) -> dict[str, Any]:
        body = super().body()
        retry = self.headers.get("Retry-After", "")
        if retry.isdigit():
            moment = datetime.now(UTC) + timedelta(seconds=int(retry))
            body[self.name]["retryAfter"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return body


class BadMediaType(Fault):
    name = "badMediaType"
    code = 415


class RangeNotSatisfiable(Fault):
    name = "rangeNotSatisfiable"
    code = 416


class NotImplementedFault(Fault):
    name = "notImplemented"
    code = 501


class ServiceUnavailable(Fault):
    name = "serviceUnavailable"
    code = 503


class BuildInProgress(Fault):
    name = "buildInProgress"
    code = 409


class BackupOrResizeInProgress(Fault):
    name = "backupOrResizeInProgress"
    code = 409


class ResizeNotAllowed(Fault):
    name = "resizeNotAllowed"
    code = 403


class ServerCapacityUnavailable(Fault):
    name = "serverCapacityUnavailable"
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
    """Translate a domain error into the fault the API answers with (the guide's specific
    fault elements where it names one, else the reference implementation's by status)."""
    if isinstance(error, errors.BuildInProgress):
        return BuildInProgress(str(error))
    if isinstance(error, errors.BackupOrResizeInProgress):
        return BackupOrResizeInProgress(str(error))
    if isinstance(error, errors.CapacityUnavailable):
        return ServerCapacityUnavailable(str(error), headers={"Retry-After": "30"})
    if isinstance(error, errors.ResizeNotAllowed):
        return ResizeNotAllowed(str(error))
    if isinstance(error, errors.NotPermitted):
        return Forbidden(str(error))
    if isinstance(error, errors.NotFound):
        return ItemNotFound(str(error))
    if isinstance(error, errors.Invalid):
        return BadRequest(str(error))
    if isinstance(error, errors.Conflict):
        return ConflictingRequest(str(error))
    if isinstance(error, errors.ServiceUnavailable):
        return ServiceUnavailable(str(error), headers={"Retry-After": "5"})
    return ComputeFault(str(error))
