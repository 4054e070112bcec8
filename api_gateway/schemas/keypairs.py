"""Request bodies of key pairs (nova's os-keypairs)."""

from __future__ import annotations

import string

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

#: nova 2013.1's safe characters for a key pair name
_SAFE = frozenset("_- " + string.digits + string.ascii_letters)

#: far above any OpenSSH public key (an RSA 16384-bit one is about 2.8 kB)
MAX_PUBLIC_KEY = 16384


class KeypairCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    #: given: import it; absent: generate a key pair
    public_key: StrictStr | None = Field(default=None, max_length=MAX_PUBLIC_KEY)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        # nova's checks, in nova's order and words
        if not set(name) <= _SAFE:
            raise ValueError("Keypair name contains unsafe characters")
        if not 0 < len(name) < 256:
            raise ValueError("Keypair name must be between 1 and 255 characters long")
        return name


class KeypairBody(BaseModel):
    """``POST /os-keypairs``: ``{"keypair": {"name": ..., "public_key"?: ...}}``."""

    model_config = ConfigDict(extra="forbid")

    keypair: KeypairCreate
