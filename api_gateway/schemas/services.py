"""Request body of ``PUT /os-services/enable`` and ``/disable`` (nova 2013.1's os-services):
``{"host": "h", "binary": "nova-compute"}`` (XML: ``<service host="h" binary="..."/>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=255)
    binary: str = Field(min_length=1, max_length=255)
