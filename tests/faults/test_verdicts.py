"""The fault suite's verdicts, without a cluster: what a server's history of accepted and
unanswered requests lets it end in, and that a request answered 2xx and then not honoured
is still found lost (a check that cannot fail checks nothing).

These run in every ``make test``: they carry no ``faults`` marker.
"""

from __future__ import annotations

import asyncio

import aiohttp

from tests.faults.checks import Seen, judge, reachable
from tests.faults.load import NO_ANSWER, NOT_SENT, Client, Ledger, Sent
from tests.support.processes import free_port

SERVER = "5f0c3f3e-0000-4000-8000-000000000001"
_ids = (f"req-{n}" for n in range(10**6))


def accepted(action: str, expect: str) -> Sent:
    return Sent(action, expect, answered=True, server_id=SERVER, request_id=next(_ids))


def unanswered(action: str, expect: str) -> Sent:
    return Sent(action, expect, answered=False, server_id=SERVER)


def succeeded(history: list[Sent]) -> dict[str, str]:
    """Every accepted request's action closed with success."""
    return {r.request_id: "success" for r in history if r.answered}


def lost(
    history: list[Sent], seen: Seen | None, results: dict[str, str] | None = None
) -> list[str]:
    """The actions found lost, with why."""
    verdicts = judge(history, seen, succeeded(history) if results is None else results)
    return [f"{r.action}: {v}" for r, v in verdicts if v not in ("completed", "failed")]


def create() -> Sent:
    return accepted("create", "ACTIVE")


def pause() -> Sent:
    return accepted("pause", "PAUSED")


def unpause() -> Sent:
    return accepted("unpause", "ACTIVE")


ACTIVE = Seen("active")
PAUSED = Seen("paused")
GONE = Seen("deleted", deleted=True)


# --- an accepted request must be honoured ---------------------------------------------------


def test_accepted_pause_then_active_is_lost() -> None:
    assert lost([create(), pause()], ACTIVE) == ["pause: server shows ACTIVE, expected PAUSED"]


def test_accepted_pause_then_paused_is_completed() -> None:
    history = [create(), pause()]
    assert [v for _, v in judge(history, PAUSED, succeeded(history))] == ["completed"] * 2


def test_accepted_delete_of_a_present_server_is_lost() -> None:
    assert lost([create(), accepted("delete", "DELETED")], ACTIVE) == [
        "delete: server shows ACTIVE, expected DELETED"
    ]


def test_server_deleted_with_no_delete_sent_is_lost() -> None:
    assert lost([create(), pause()], GONE) == ["pause: server shows DELETED, expected PAUSED"]


def test_accepted_create_of_no_server_is_lost() -> None:
    assert lost([create()], None) == ["create: no such server"]


def test_an_action_that_failed_with_an_error_is_failed_not_lost() -> None:
    history = [create(), pause()]
    results = {**succeeded(history), history[1].request_id: "error"}
    assert [v for _, v in judge(history, ACTIVE, results)] == ["completed", "failed"]


# --- an unanswered request may or may not have been taken ---------------------------------


def test_accepted_pause_unanswered_unpause_may_end_active_or_paused() -> None:
    """The CI failure: the unpause was taken by the gateway that was then killed."""
    history = [create(), pause(), unanswered("unpause", "ACTIVE")]
    assert reachable(history) == {"PAUSED", "ACTIVE"}
    assert lost(history, ACTIVE) == []
    assert lost(history, PAUSED) == []
    assert lost(history, Seen("suspended")) == [
        "pause: server shows SUSPENDED, expected ACTIVE or PAUSED"
    ]


def test_an_accepted_request_after_an_unanswered_one_decides() -> None:
    """pause, unpause (no answer), unpause (202): the gateway accepts an unpause only from
    PAUSED, so whatever the first unpause did, the accepted one promises ACTIVE."""
    history = [create(), pause(), unanswered("unpause", "ACTIVE"), unpause()]
    assert reachable(history) == {"ACTIVE"}
    assert lost(history, ACTIVE) == []
    assert lost(history, PAUSED) == ["unpause: server shows PAUSED, expected ACTIVE"]


def test_unanswered_retries_add_up() -> None:
    history = [create(), pause(), unanswered("unpause", "ACTIVE")]
    history += [unanswered("unpause", "ACTIVE"), unanswered("delete", "DELETED")]
    assert reachable(history) == {"PAUSED", "ACTIVE", "DELETED"}


def test_unanswered_delete_may_leave_the_server_or_not() -> None:
    history = [create(), unanswered("delete", "DELETED")]
    assert lost(history, ACTIVE) == []
    assert lost(history, GONE) == []


def test_unanswered_request_that_failed_with_a_fault_is_failed() -> None:
    history = [create(), pause(), unanswered("unpause", "ACTIVE")]
    verdicts = judge(history, Seen("error", faulted=True), succeeded(history))
    assert [v for _, v in verdicts] == ["failed", "failed"]


def test_unanswered_create_owes_nothing_until_its_server_turns_up() -> None:
    """No server: nothing to judge. A server that turned up (tests/faults/checks.py's
    ``_found_creates`` makes its create an accepted one) owes what any create owes."""
    history = [Sent("create", "ACTIVE", answered=False, name="f0123")]
    assert reachable(history) == {"DELETED", "ACTIVE"}
    assert judge(history, None, {}) == []
    assert lost([create()], ACTIVE) == []
    assert lost([create()], Seen("building")) == ["create: server shows BUILD, expected ACTIVE"]
    assert lost([create()], Seen("building", "spawning"), {}) == [
        "create: no action recorded for the request"
    ]


# --- what the load writes down ------------------------------------------------------------


async def test_a_request_cut_off_under_way_is_indeterminate() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request reached the gateway ...
        writer.close()  # ... which died before answering

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    dying = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    down = f"http://127.0.0.1:{free_port()}"  # nobody listens: the request is never sent
    ledger = Ledger()
    path = f"/servers/{SERVER}/action"
    try:
        async with aiohttp.ClientSession() as session:
            for url, expected in ((dying, NO_ANSWER), (down, NOT_SENT)):
                client = Client(session, [url], "t", ledger, asyncio.Event())
                status, _, _ = await client.request("POST", path, {"unpause": None})
                assert status == expected
                client.write_down(status, "unpause", "ACTIVE", server_id=SERVER, request_id="")
    finally:
        server.close()
        await server.wait_closed()
    client.write_down(409, "unpause", "ACTIVE", server_id=SERVER, request_id="r1")
    client.write_down(202, "unpause", "ACTIVE", server_id=SERVER, request_id="r2")
    assert ledger.indeterminate == [unanswered("unpause", "ACTIVE")]
    assert ledger.accepted == [Sent("unpause", "ACTIVE", True, SERVER, "r2")]
    assert ledger.refused == 2  # the 409 and the request that never went out


async def test_a_delete_cut_off_then_refused_is_indeterminate() -> None:
    """aiohttp sends a cut-off DELETE again on a new connection: when the gateway died in
    between, the error raised is a refused connection, yet the first one may have been
    taken (the fault suite saw such deletes done)."""
    ledger = Ledger()

    async def take_and_die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        server.close()  # no more connections: aiohttp's second attempt is refused
        writer.close()

    server = await asyncio.start_server(take_and_die, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with aiohttp.ClientSession() as session:
        client = Client(session, [url], "t", ledger, asyncio.Event())
        status, _, _ = await client.request("DELETE", f"/servers/{SERVER}")
    await server.wait_closed()
    assert status == NO_ANSWER
