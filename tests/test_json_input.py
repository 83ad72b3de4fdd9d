"""The nesting cap on JSON from outside: counted before parsing, without recursion."""

from __future__ import annotations

import pytest

from webhooks_app.json_input import MAX_JSON_DEPTH, JsonInputError, json_depth, parse_json


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('"[[[["', 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "\\"[[[", "b": [[]]}', 3),
        ("[" * 5000, 5000),
    ],
)
def test_depth_counts_brackets_outside_strings(text, depth):
    assert json_depth(text) == depth


def test_the_cap_itself_is_accepted_and_one_more_level_is_refused():
    assert parse_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(JsonInputError, match="nested more than"):
        parse_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))


def test_sixty_thousand_brackets_are_refused_not_a_recursion_error():
    with pytest.raises(JsonInputError):
        parse_json(b"[" * 60000)


def test_malformed_and_non_utf8_bodies_are_input_errors():
    with pytest.raises(JsonInputError, match="malformed"):
        parse_json("{nope")
    with pytest.raises(JsonInputError, match="UTF-8"):
        parse_json(b"\xff\xfe")
