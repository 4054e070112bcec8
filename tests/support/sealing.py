"""The tests' message key (STRATUS_MESSAGE_KEY), and admin passwords sealed with it as a
gateway seals them, for tests that put a command on the bus themselves."""

from __future__ import annotations

import uuid

from shared.messages import WithAdminPass
from shared.sealing import Keyring, generate_key

#: The key of every system the tests start, in-process or as processes: gateways and agents
#: must share one, and none is written down in the repository.
MESSAGE_KEY = generate_key()
KEYRING = Keyring.from_setting(MESSAGE_KEY)


def sealed(
    command: type[WithAdminPass], password: str, *, server_id: uuid.UUID, action_id: uuid.UUID
) -> str:
    """``password`` as ``command`` carries it for ``action_id`` on ``server_id``."""
    return command.seal_admin_pass(KEYRING, password, server_id=server_id, action_id=action_id)
