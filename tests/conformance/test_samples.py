"""Every sample of the guide (chapters 1–2): the request it shows, the response it shows."""

from __future__ import annotations

import aiohttp
import pytest

from stratus.system import System
from tests.conformance import cases_core, cases_resources  # noqa: F401  (they register)
from tests.conformance.registry import CASES, Case
from tests.conformance.shapes import compare_json, compare_xml
from tests.conformance.support import Env, sample_bytes, sample_json


@pytest.mark.parametrize("name", sorted(CASES))
async def test_sample(name: str, system: System, http: aiohttp.ClientSession) -> None:
    case: Case = CASES[name]
    env = Env(http, system)
    try:
        reply = await case.run(env)
        assert reply.status == case.status, reply.body[:500]
        if case.compare is None:
            return
        if case.compare.endswith(".json"):
            assert reply.content_type == "application/json", reply.content_type
            compare_json(sample_json(case.compare), reply.json(), case.allow)
        else:
            expected_type = (
                "application/atom+xml" if case.compare.endswith(".atom") else "application/xml"
            )
            assert reply.content_type == expected_type, reply.content_type
            compare_xml(sample_bytes(case.compare), reply.body, case.allow)
    finally:
        await env.cleanup()


def test_every_sample_of_chapters_1_and_2_is_covered_or_explained() -> None:
    from tests.conformance.registry import NOT_APPLICABLE
    from tests.conformance.support import SAMPLES

    samples = {
        path.relative_to(SAMPLES).as_posix()
        for path in SAMPLES.rglob("*")
        if path.is_file()
        and path.relative_to(SAMPLES).as_posix().startswith(("1.", "2.", "extra/"))
    }
    covered = {name for case in CASES.values() for name in case.covers}
    assert covered.isdisjoint(NOT_APPLICABLE)
    assert samples - covered - set(NOT_APPLICABLE) == set()
    assert set(NOT_APPLICABLE) <= samples
