"""STRATUS_RATE_LIMITS: the grammar, its errors, which requests a rule counts, bucket math."""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.http.rate_limits import RateLimiter
from shared.config import Settings
from shared.rate_limits import (
    DEFAULT_RATE_LIMITS,
    UNITS,
    VERBS,
    RateLimit,
    RateLimitSyntaxError,
    format_rate_limits,
    parse_rate_limits,
)

BRIEF_EXAMPLE = (
    '(POST, "*", .*, 10, MINUTE);(POST, "*/servers", ^/servers, 50, DAY);'
    '(PUT, "*", .*, 10, MINUTE);(GET, "*changes-since*", .*changes-since.*, 3, MINUTE);'
    '(DELETE, "*", .*, 100, MINUTE)'
)


def _fields(rules: tuple[RateLimit, ...]) -> list[tuple[str, str, str, int, str]]:
    return [(r.verb, r.uri, r.regex, r.value, r.unit) for r in rules]


def test_the_default_is_table_1_1_of_the_guide() -> None:
    assert _fields(parse_rate_limits(DEFAULT_RATE_LIMITS)) == [
        ("POST", "*", ".*", 10, "MINUTE"),
        ("POST", "*/servers", "^/servers", 50, "DAY"),
        ("PUT", "*", ".*", 10, "MINUTE"),
        ("GET", "*changes-since*", ".*changes-since.*", 3, "MINUTE"),
        ("DELETE", "*", ".*", 100, "MINUTE"),
    ]
    assert Settings.model_fields["rate_limits"].default == DEFAULT_RATE_LIMITS


def test_the_reference_form_parses() -> None:
    assert _fields(parse_rate_limits(BRIEF_EXAMPLE)) == _fields(
        parse_rate_limits(DEFAULT_RATE_LIMITS)
    )


@pytest.mark.parametrize("empty", ["", "   ", "\n\t"])
def test_an_empty_value_means_no_rate_limits(empty: str) -> None:
    assert parse_rate_limits(empty) == ()
    assert Settings(rate_limits=empty).rate_limits == empty


def test_spacing_case_quotes_and_a_trailing_separator_are_forgiven() -> None:
    rules = parse_rate_limits("  ( get ,*/images,  ^/images ,  7 , hour ) ;\n")
    assert _fields(rules) == [("GET", "*/images", "^/images", 7, "HOUR")]


def test_a_regex_may_contain_commas_and_parentheses() -> None:
    (rule,) = parse_rate_limits(r'(GET, "*", ^/servers/(\d{1,3})$, 5, HOUR)')
    assert rule.regex == r"^/servers/(\d{1,3})$"
    assert rule.applies_to("GET", "/servers/12")
    assert not rule.applies_to("GET", "/servers/1234")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('POST, "*", .*, 10, MINUTE', "malformed rule"),
        ('(POST, "*", .*, 10, MINUTE', "malformed rule"),
        ('(GET, "*", 3, MINUTE)', "malformed rule"),
        # without the ';' the rest reads as part of the first rule's regex, which is invalid
        ('(POST, "*", .*, 10, MINUTE) (PUT, "*", .*, 10, MINUTE)', "regular expression"),
        ('(POST, "*", .*, 10, MINUTE);;', "malformed rule"),
        ('(FETCH, "*", .*, 10, MINUTE)', "unknown verb 'FETCH'"),
        ('(POST, "*", .*, 10, FORTNIGHT)', "unknown unit 'FORTNIGHT'"),
        ('(POST, "*", .*, ten, MINUTE)', "the value 'ten' is not an integer"),
        ('(POST, "*", .*, 0, MINUTE)', "the value 0 is not positive"),
        ('(POST, "*", .*, -3, MINUTE)', "the value -3 is not positive"),
        ('(POST, "*", [a-, 10, MINUTE)', "the regular expression '[a-' is invalid"),
        ('(POST, "*", .*, 10, MINUTE);(POST, "*", .*, 20, MINUTE)', "a rule given twice"),
    ],
)
def test_a_bad_value_is_refused_with_a_message_that_says_what_and_where(
    value: str, problem: str
) -> None:
    with pytest.raises(RateLimitSyntaxError) as raised:
        parse_rate_limits(value)
    message = str(raised.value)
    assert message.startswith("STRATUS_RATE_LIMITS: ")
    assert problem in message
    assert '(POST, "*", .*, 10, MINUTE)' in message  # the expected form


def test_a_bad_value_stops_the_settings_from_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_RATE_LIMITS", '(POST, "*", .*, 10, FORTNIGHT)')
    with pytest.raises(pydantic.ValidationError) as raised:
        Settings()
    assert "STRATUS_RATE_LIMITS: unknown unit 'FORTNIGHT'" in str(raised.value)


def test_the_environment_sets_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_RATE_LIMITS", '(PUT, "*", .*, 2, SECOND)')
    assert _fields(parse_rate_limits(Settings().rate_limits)) == [("PUT", "*", ".*", 2, "SECOND")]
    monkeypatch.setenv("STRATUS_RATE_LIMITS", "")
    assert Settings().rate_limits == ""


_SAFE_TEXT = st.text(
    alphabet=st.characters(
        whitelist_categories=("L", "N"), whitelist_characters="*/-_.", max_codepoint=0x2FF
    ),
    min_size=1,
    max_size=20,
)
_REGEXES = st.sampled_from([".*", "^/servers", ".*changes-since.*", r"^/images/\d{1,3}", "x|y"])


@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(VERBS)),
            _SAFE_TEXT,
            _REGEXES,
            st.integers(1, 10**6),
            st.sampled_from(list(UNITS)),
        ),
        max_size=6,
        unique_by=lambda r: (r[0], r[1], r[2], r[4]),
    )
)
def test_formatted_rules_parse_back_to_the_same_rules(
    fields: list[tuple[str, str, str, int, str]],
) -> None:
    text = ";".join(f'({v}, "{u}", {r}, {n}, {t})' for v, u, r, n, t in fields)
    rules = parse_rate_limits(text)
    assert _fields(rules) == fields
    assert parse_rate_limits(format_rate_limits(rules)) == rules


def test_a_rule_counts_requests_with_its_verb_whose_target_it_matches() -> None:
    post_any, post_servers, _put, changes, _delete = parse_rate_limits(DEFAULT_RATE_LIMITS)
    assert post_any.applies_to("POST", "/servers/1/action")
    assert not post_any.applies_to("GET", "/servers")
    assert post_servers.applies_to("POST", "/servers")
    assert post_servers.applies_to("POST", "/servers.json")
    assert not post_servers.applies_to("POST", "/images/servers")
    assert changes.applies_to("GET", "/servers/detail?changes-since=2011-01-24T17:08Z")
    assert not changes.applies_to("GET", "/servers/detail?limit=3")
    (everything,) = parse_rate_limits('(ALL, "*", .*, 1, SECOND)')
    assert everything.applies_to("GET", "/flavors")
    assert everything.applies_to("DELETE", "/servers/1")


def test_with_the_defaults_a_plain_get_has_nothing_to_count() -> None:
    limiter = RateLimiter(parse_rate_limits(DEFAULT_RATE_LIMITS))
    assert limiter.matching("GET", "/servers/detail") == []
    assert [r.uri for r in limiter.matching("GET", "/servers?changes-since=2013")] == [
        "*changes-since*"
    ]
    assert [r.uri for r in limiter.matching("POST", "/servers")] == ["*", "*/servers"]
    assert limiter.candidates("PATCH") == ()
    with_all = RateLimiter(parse_rate_limits('(ALL, "*", .*, 1, SECOND);(GET, "*", x, 1, DAY)'))
    assert [r.verb for r in with_all.candidates("GET")] == ["ALL", "GET"]
    assert [r.verb for r in with_all.candidates("PATCH")] == ["ALL"]


def test_a_bucket_takes_a_burst_of_value_requests_then_refills_at_the_steady_rate() -> None:
    (rule,) = parse_rate_limits('(POST, "*", .*, 7, MINUTE)')
    level = 0.0
    for expected_remaining in range(7, 0, -1):
        assert rule.remaining(level) == expected_remaining
        assert rule.delay(level) == 0
        level += rule.cost
    assert rule.remaining(level) == 0
    assert rule.delay(level) == pytest.approx(60 / 7)
    assert rule.remaining(level - 60 / 7) == 1  # one request's worth drained
    assert rule.describe() == "Only 7 POST request(s) can be made to * every minute."
