"""The audit trail as nova's ``os-instance-actions`` extension shows it.

One action: ``action``, ``instance_uuid``, ``request_id``, ``user_id``, ``project_id``,
``start_time``, ``message`` (nova 2013.1's members; ``message`` null unless something was
said, usually why it failed). A HARD reboot is recorded as ``reboot_hard`` but shown as
``reboot``, the action the user asked for. An action's ``events`` (for administrators) are
its steps; Stratus records an action whole, so it has one event, the action itself, with its
start, finish and result (``Success``, ``Error``, or null while it runs).
"""

from __future__ import annotations

from typing import Any

from api_gateway.auth.policy import operation_of
from api_gateway.views.links import isotime
from shared.db.records import Action

_RESULTS = {"success": "Success", "error": "Error"}


def action(row: Action) -> dict[str, Any]:
    return {
        "action": operation_of(row.action),
        "instance_uuid": str(row.server_id),
        "request_id": row.request_id,
        "user_id": row.user_id,
        "project_id": row.tenant_id,
        "start_time": isotime(row.started_at),
        "message": row.message,
    }


def events(row: Action) -> list[dict[str, Any]]:
    return [
        {
            "event": operation_of(row.action),
            "start_time": isotime(row.started_at),
            "finish_time": isotime(row.finished_at) if row.finished_at else None,
            "result": _RESULTS.get(row.result),
            "traceback": None,
        }
    ]
