"""JSON from strangers: parsed only when its nesting is shallow enough.

`json.loads` recurses once per level of nesting, so a body of 60,000 `[`
raises RecursionError from deep inside the parser, and a value nested ~1,000
deep parses but then breaks `json.dumps` (and so the INSERT that stores it).
No MercadoPago notification and no API call of ours nests more than a few
levels, so every route that reads JSON asks this module, which counts the
nesting first, in one pass, without recursion.
"""

from __future__ import annotations

import json
from typing import Any

# Deeper than any notification or API body we accept; far below Python's recursion limit.
MAX_JSON_DEPTH = 32

_OPENERS = frozenset("[{")
_CLOSERS = frozenset("]}")


class JsonInputError(ValueError):
    """The text is not JSON we accept; the message says why, for a 400 answer."""


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text` (0 for a scalar).

    Brackets inside strings do not count. The text need not be valid JSON: this
    only bounds the work `json.loads` would do.
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in _OPENERS:
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in _CLOSERS:
            depth -= 1
    return deepest


def parse_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text whose nesting is at most `max_depth`; raise JsonInputError otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonInputError("the body is not UTF-8 text") from None
    if json_depth(text) > max_depth:
        raise JsonInputError(f"the JSON body is nested more than {max_depth} levels deep")
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen below the cap; kept as the last guard
        raise JsonInputError("the JSON body is nested too deeply") from None
    except ValueError:
        raise JsonInputError("malformed JSON body") from None
