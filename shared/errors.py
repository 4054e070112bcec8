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
