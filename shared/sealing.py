"""Secrets in messages are sealed: nothing secret rests in clear text on the broker.

A server's admin password travels from the gateway to the agent of its host (changePassword,
rebuild, a build through the conductor). A persistent message sits on the broker's disk, a
failing one is parked there again for its retries, and one that keeps failing ends in the
dead-letter queue, where anyone who can read the queue reads it. Redacting it on the way to
the dead letters would not do: a retried message must still work. So the gateway seals the
password with AES-256-GCM under the deployment's message key (``STRATUS_MESSAGE_KEY``) and only
the agent that uses it opens it; the conductor forwards it sealed and never holds the key.

A sealed value is the string ``sealed:v1:<key id>:<nonce and ciphertext, urlsafe base64>``:

* the key id (the first 8 hex digits of a hash of the key, which tells nothing of the key)
  says which key sealed it, so an agent configured with another key than the gateway fails
  the action with a fault that says so, rather than a vague "cannot decrypt";
* the setting may hold several keys, comma-separated: the first seals, every one opens, so a
  key is rotated without failing the messages still on the broker (add the new one first on
  the agents, then put it first on the gateways, drop the old one once the queues have
  drained);
* the additional authenticated data binds the value to what it is for (``context``: which
  command opens it, for which server and which action), so a value cut out of one message
  does not open in another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import AfterValidator, SecretStr

log = logging.getLogger(__name__)

SETTING = "STRATUS_MESSAGE_KEY"
KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_VERSION = "v1"
_PREFIX = f"sealed:{_VERSION}:"
#: nonce and tag at least (an empty secret), in unpadded base64
_SEALED = re.compile(rf"{_PREFIX}(?P<kid>[0-9a-f]{{8}}):(?P<box>[A-Za-z0-9_-]{{38,}})")
_HOW_TO_MAKE_ONE = "make one with `stratus message-key`"
#: what the signing key of a message key is derived with
_SIGNING = b"stratus signing key\0"


class SealingError(Exception):
    """The message key is missing or malformed: the process cannot seal or open anything.
    The message names the setting and how to make a key, never the value."""


class UnsealError(Exception):
    """A sealed value does not open here; the message is fit for the fault of the action that
    needed it (it names key ids, never a key or the secret)."""


def generate_key() -> str:
    """A fresh random key, as ``STRATUS_MESSAGE_KEY`` takes it."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    """Which key sealed a value, without telling anything of the key: a hash of it, domain
    separated, cut to 32 bits (enough to tell a deployment's few keys apart)."""
    return hashlib.sha256(b"stratus message key id\0" + key).hexdigest()[:8]


def _decode_key(text: str) -> bytes:
    """A 32-byte key from base64, urlsafe or standard, padded or not: ``stratus
    message-key`` prints urlsafe, but ``openssl rand -base64 32`` is what many reach for."""
    text = text.strip().translate(str.maketrans("-_", "+/"))
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SealingError(
            f"{SETTING} holds something that is not base64: {_HOW_TO_MAKE_ONE}"
        ) from None
    if len(key) != KEY_BYTES:
        raise SealingError(
            f"{SETTING} must be {KEY_BYTES} bytes in base64 (this one is {len(key)}): "
            f"{_HOW_TO_MAKE_ONE}"
        )
    return key


def parse_keys(value: str) -> list[bytes]:
    """The keys of the setting's value: one, or several comma-separated (the first seals)."""
    keys = [_decode_key(part) for part in value.split(",") if part.strip()]
    if not keys:
        raise SealingError(f"{SETTING} is empty: {_HOW_TO_MAKE_ONE}")
    return keys


class Keyring:
    """The deployment's message keys: the first seals (and signs), every one opens (and
    verifies)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SealingError(f"{SETTING} holds no key: {_HOW_TO_MAKE_ONE}")
        self._ciphers: dict[str, AESGCM] = {}
        self._signers: dict[str, bytes] = {}
        for key in keys:
            if len(key) != KEY_BYTES:
                raise SealingError(f"a message key must be {KEY_BYTES} bytes")
            self._ciphers.setdefault(key_id(key), AESGCM(key))
            # a key of its own for signatures (never the cipher's key for two purposes)
            self._signers.setdefault(key_id(key), hashlib.sha256(_SIGNING + key).digest())
        self.sealing_key_id = key_id(keys[0])

    @classmethod
    def from_setting(cls, setting: SecretStr | str | None) -> Keyring:
        """The keyring of ``STRATUS_MESSAGE_KEY``; ``SealingError`` when it is unset or
        malformed, naming the setting and how to make a key."""
        if setting is None:
            raise SealingError(
                f"{SETTING} must be set: the key that seals admin passwords in messages, the "
                f"same on every gateway and compute agent; {_HOW_TO_MAKE_ONE}"
            )
        value = setting.get_secret_value() if isinstance(setting, SecretStr) else setting
        return cls(parse_keys(value))

    def seal(self, secret: str, context: str) -> str:
        """``secret`` sealed for ``context`` under the first key."""
        nonce = os.urandom(_NONCE_BYTES)
        kid = self.sealing_key_id
        box = nonce + self._ciphers[kid].encrypt(nonce, secret.encode(), _aad(kid, context))
        return f"{_PREFIX}{kid}:{base64.urlsafe_b64encode(box).decode().rstrip('=')}"

    def unseal(self, sealed: str, context: str) -> str:
        """The secret ``sealed`` holds, if it was sealed for ``context`` under one of the
        keys; ``UnsealError`` otherwise."""
        match = _SEALED.fullmatch(sealed)
        if match is None:
            raise UnsealError("the secret in the message is not sealed (shared/sealing.py)")
        kid = match["kid"]
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnsealError(
                f"the admin password was sealed with message key {kid}, which this host does "
                f"not have (it has {', '.join(self._ciphers)}): {SETTING} must hold the same "
                "key on every gateway and compute agent"
            )
        box = base64.urlsafe_b64decode(match["box"] + "=" * (-len(match["box"]) % 4))
        try:
            clear = cipher.decrypt(box[:_NONCE_BYTES], box[_NONCE_BYTES:], _aad(kid, context))
        except InvalidTag:
            raise UnsealError(
                f"the admin password sealed with message key {kid} does not open: it was "
                "sealed for another message, or altered"
            ) from None
        return clear.decode()

    def sign(self, text: str) -> str:
        """A signature of ``text`` under the first key (``<key id>.<HMAC-SHA256, hex>``):
        what a signed URL carries, so that its holder needs no token (agents fetching
        images)."""
        kid = self.sealing_key_id
        return f"{kid}.{hmac.new(self._signers[kid], text.encode(), 'sha256').hexdigest()}"

    def verify(self, text: str, signature: str) -> bool:
        """Did one of the keys sign ``text``?"""
        kid, _, mac = signature.partition(".")
        key = self._signers.get(kid)
        if key is None:
            return False
        return hmac.compare_digest(mac, hmac.new(key, text.encode(), "sha256").hexdigest())


def _aad(kid: str, context: str) -> bytes:
    return f"stratus:sealed:{_VERSION}:{kid}:{context}".encode()


def _check_sealed(value: str) -> str:
    """Refuse clear text where a sealed value belongs. The error does not repeat the value
    (messages hide their input in errors: shared/messages.py)."""
    if _SEALED.fullmatch(value) is None:
        raise ValueError("must be sealed (shared/sealing.py), never clear text")
    return value


#: A secret as a message carries it: only ever sealed, so no message can hold the clear text.
SealedSecret = Annotated[str, AfterValidator(_check_sealed)]


def local_key(path: Path) -> SecretStr:
    """The key kept in ``path``, made there (mode 0600) on the first call.

    ``stratus up`` is every role in one process, so it needs no key shared with anyone: it
    makes its own. It keeps it rather than making one at each start because with an external
    broker (STRATUS_AMQP_URL) sealed messages outlive the process, parked for a retry.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_local_key(path)
    with os.fdopen(fd, "w") as file:
        file.write(generate_key() + "\n")
    log.info("made a message key in %s", path)
    return _read_local_key(path)


def _read_local_key(path: Path) -> SecretStr:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o): made it 0600", path, mode)
        path.chmod(0o600)
    value = path.read_text().strip()
    try:
        parse_keys(value)
    except SealingError:
        raise SealingError(
            f"{path} does not hold a message key: remove it for a new one (messages sealed "
            f"with the old one then fail), or set {SETTING}"
        ) from None
    return SecretStr(value)
