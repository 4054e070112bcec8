"""Domain errors shared by the services; the gateway translates them into v2 faults at its edge."""

from __future__ import annotations


class StratusError(Exception):
    """Base of every domain error; ``str(error)`` is a message fit for an API user."""


class NotFound(StratusError):
    pass


class Invalid(StratusError):
    pass


class Conflict(StratusError):
    """The resource is in a state that does not allow the request now."""


class ServiceUnavailable(StratusError):
    """A dependency (the bus, the database) could not take the request; nothing was changed."""


class BuildInProgress(Conflict):
    """The server is still being built."""


class BackupOrResizeInProgress(Conflict):
    """A snapshot, backup or resize of the server is under way."""


class CapacityUnavailable(ServiceUnavailable):
    """No host could ever take the request's flavor."""


class NotPermitted(StratusError):
    """The caller may not do this (policy), whatever the resource's state."""


class ResizeNotAllowed(NotPermitted):
    """This resize can never be done (a disk cannot shrink)."""
