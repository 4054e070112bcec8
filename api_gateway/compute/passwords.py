"""Admin passwords the gateway makes up when a request gives none (create, rebuild)."""

from __future__ import annotations

import secrets
import string

#: letters and digits, without those a person misreads for one another
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0OIl1")


def generate_password(length: int = 12) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
