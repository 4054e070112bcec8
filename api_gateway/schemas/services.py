"""Request bodies of os-services' updates: ``PUT /os-services/enable`` and ``/disable``
``{"host": "h", "binary": "nova-compute"}`` (nova 2013.1; XML ``<service host="h"
binary="..."/>``), and ``PUT /os-services/disable-log-reason`` with a ``disabled_reason`` too
(nova 2013.2's os-extended-services; XML ``<service ... disabled_reason="..."/>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ServiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=255)
    binary: str = Field(min_length=1, max_length=255)


class ServiceDisableWithReason(ServiceUpdate):
    #: nova: 1 to 255 characters once stripped of surrounding blanks (kept as given)
    disabled_reason: str = Field(max_length=255)

    @field_validator("disabled_reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the disabled reason must not be blank")
        return value
