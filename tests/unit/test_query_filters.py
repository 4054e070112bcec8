"""The list filters' query parameters (guide 1.5, 2.1.1, 2.5.1) and Update Server's body."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest

from api_gateway.http.faults import BadRequest
from api_gateway.schemas.filters import image_filters, instant, server_filters
from api_gateway.schemas.servers import UpdateServerBody

IMAGE = "52415800-8b69-11e0-9b19-734f6f006e54"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2011-01-24T17:08Z", datetime(2011, 1, 24, 17, 8, tzinfo=UTC)),
        ("2011-01-24T17:08:00", datetime(2011, 1, 24, 17, 8, tzinfo=UTC)),
        ("2011-01-24T17:08:00Z", datetime(2011, 1, 24, 17, 8, tzinfo=UTC)),
        ("2011-01-24T18:08:00+01:00", datetime(2011, 1, 24, 17, 8, tzinfo=UTC)),
        ("2011-01-24T18:08:00 01:00", datetime(2011, 1, 24, 17, 8, tzinfo=UTC)),
        ("2011-01-24T12:08:00.5-05:00", datetime(2011, 1, 24, 17, 8, 0, 500000, tzinfo=UTC)),
        ("2011-01-24", datetime(2011, 1, 24, tzinfo=UTC)),
    ],
)
def test_changes_since_takes_iso_8601_with_or_without_a_zone(text: str, expected: datetime) -> None:
    moment = instant(text)
    assert moment == expected
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2011-13-01", "2011-01-24T24:01", "0001-01-01T00:00+01:00", "17:08"]
)
def test_changes_since_that_does_not_parse_is_a_400(text: str) -> None:
    with pytest.raises(BadRequest, match="changes-since"):
        instant(text)


def test_server_filters_take_ids_or_urls_and_default_statuses() -> None:
    filters = server_filters(
        {
            "image": f"http://h/v2/t/images/{IMAGE}",
            "flavor": "http://h/t/flavors/3/",
            "name": "^web",
            "status": "shutoff",
            "changes-since": "2011-01-24T17:08Z",
            "unknown": "ignored",
        }
    )
    assert filters is not None
    assert filters.image_id == uuid.UUID(IMAGE)
    assert filters.flavor_id == "3"
    assert filters.name_regex == "^web"
    assert filters.vm_states == frozenset({"stopped"})
    assert filters.changes_since == datetime(2011, 1, 24, 17, 8, tzinfo=UTC)
    assert server_filters({}) is not None
    assert server_filters({"status": "DELETED"}) is not None


@pytest.mark.parametrize(
    "query", [{"status": "REBOOT"}, {"status": "RESIZE"}, {"status": "x"}, {"image": "not-a-id"}]
)
def test_server_filters_that_cannot_match_make_an_empty_list(query: dict[str, str]) -> None:
    assert server_filters(query) is None


@pytest.mark.parametrize(
    "query", [{"name": "a\x00"}, {"flavor": "\x00"}, {"changes-since": "soon"}]
)
def test_server_filters_that_do_not_parse_are_a_400(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        server_filters(query)


def test_image_filters_map_v2_statuses_and_types() -> None:
    saving = image_filters({"status": "saving", "type": "SERVER", "minRam": "512"})
    assert saving is not None
    assert saving.status_in == frozenset({"queued", "saving"})
    assert (saving.base, saving.image_type, saving.min_ram_mb) == (False, None, 512)
    unknown = image_filters({"status": "UNKNOWN", "type": "base"})
    assert unknown is not None and unknown.status_not_in and unknown.base is True
    snapshots = image_filters({"type": "Snapshot", "server": f"http://h/servers/{IMAGE}"})
    assert snapshots is not None
    assert (snapshots.base, snapshots.image_type, snapshots.server_id) == (
        None,
        "snapshot",
        uuid.UUID(IMAGE),
    )
    everything = image_filters({"type": "ALL"})
    assert everything is not None and (everything.base, everything.image_type) == (None, None)
    assert image_filters({"status": "REBOOT"}) is None
    assert image_filters({"server": "nope"}) is None


@pytest.mark.parametrize("value", ["x", "1.0", "2147483648", "-2147483649", ""])
def test_integer_image_filters_out_of_range_or_not_integers_are_a_400(value: str) -> None:
    with pytest.raises(BadRequest, match="minDisk"):
        image_filters({"minDisk": value})


def _update(server: Any) -> dict[str, str]:
    return UpdateServerBody.model_validate({"server": server}).server.changes()


def test_update_changes_only_what_was_given() -> None:
    assert _update({"name": "  web  "}) == {"name": "web"}
    assert _update({"accessIPv4": "67.23.10.132", "accessIPv6": "::babe:67.23.10.132"}) == {
        "access_ipv4": "67.23.10.132",
        "access_ipv6": "::babe:4317:a84",
    }
    assert _update({"accessIPv4": None, "accessIPv6": ""}) == {
        "access_ipv4": "",
        "access_ipv6": "",
    }
    # OS-DCF's member is taken and not acted on; any other member is refused (nova v2.1)
    assert _update({"name": "x", "OS-DCF:diskConfig": "AUTO"}) == {"name": "x"}
    with pytest.raises(pydantic.ValidationError, match="metadata"):
        _update({"name": "x", "metadata": {"a": "b"}})


@pytest.mark.parametrize(
    "server",
    [
        {},
        {"metadata": {}},
        {"name": None},
        {"name": ""},
        {"name": "x" * 256},
        {"accessIPv4": "1.2.3"},
        {"accessIPv4": 16909060},
        {"accessIPv6": True},
        {"accessIPv6": "1.2.3.4"},
        {"name": "x", "hostId": "y"},
        {"name": "x", "personality": []},
        "x",
        None,
    ],
)
def test_update_bodies_that_are_refused(server: Any) -> None:
    with pytest.raises(pydantic.ValidationError):
        UpdateServerBody.model_validate({"server": server})


def test_zones_other_than_utc_are_converted() -> None:
    tz = timezone(timedelta(hours=-3))
    assert instant("2011-01-24T14:08:00-03:00") == datetime(2011, 1, 24, 14, 8, tzinfo=tz)
