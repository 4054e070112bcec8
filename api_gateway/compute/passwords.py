"""Admin passwords the gateway makes up when a request gives none (create, rebuild)."""

from __future__ import annotations

import secrets
import string

#: letters and digits, without those a person misreads for one another
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0OIl1")


def generate_password(length: int = 12) -> str:
    return random_string(_ALPHABET, length)


def random_string(alphabet: str, length: int) -> str:
    """``length`` characters drawn uniformly from ``alphabet`` (at most 256 of them) with
    the system's secure random source: as ``secrets.choice`` draws, but from one read of it
    for the whole string rather than a system call per character (every create makes two
    such strings). Bytes that would favour the alphabet's first characters are skipped."""
    size = len(alphabet)
    assert 0 < size <= 256
    limit = 256 - 256 % size
    chars: list[str] = []
    while len(chars) < length:
        for byte in secrets.token_bytes(2 * length):
            if byte < limit:
                chars.append(alphabet[byte % size])
                if len(chars) == length:
                    break
    return "".join(chars)
